//! The browser's side of a save: which saved files the app reads at run time (assets, runtime
//! templates), so that they start no build and pages are told at once, and the environment that
//! turns live reload on in generations.
//!
//! A file under an asset directory (`[browser] asset_dirs`, by default `assets/`, `static/` and
//! `public/` of the handler package where they exist) or matching a runtime template glob
//! (`[browser] runtime_templates`) is an asset, unless the last successful build read it: cargo's
//! dep-info file next to the artifact lists every file the compiler read, `include_str!` and
//! askama templates among them, and those must build.

use std::path::{Component, Path, PathBuf};

use hotswap_protocol::events::ChangedAsset;

use crate::config::BrowserSection;

/// The environment variable that tells a generation's SDK where the daemon's socket is; live
/// reload is on in generations that have it (see `handler/src/sdk/live_reload.rs`).
pub const LIVE_RELOAD_SOCKET_VARIABLE: &str = "HOTSWAP_LIVE_RELOAD_SOCKET";

/// The variable that turns live reload on in generations, pointing them at the daemon's socket.
pub fn live_reload_environment(socket: &Path) -> (std::ffi::OsString, std::ffi::OsString) {
    (LIVE_RELOAD_SOCKET_VARIABLE.into(), socket.as_os_str().to_owned())
}

/// Says at start-up what live reload and the asset directories are.
pub fn log_settings(section: &BrowserSection, files: &BrowserFiles) {
    let dirs: Vec<String> = files.asset_dirs.iter().map(|dir| dir.display().to_string()).collect();
    tracing::info!(
        "live reload in pages: {}; saves that start no build: {}{}",
        if section.live_reload { "on ([browser] live_reload = false turns it off)" } else { "off" },
        if dirs.is_empty() { "no asset directory".to_owned() } else { dirs.join(", ") },
        if section.runtime_templates.is_empty() {
            String::new()
        } else {
            format!(", templates {}", section.runtime_templates.join(", "))
        }
    );
}

/// Why a save of an asset starts no build (in `didSave`'s `ignored`).
pub const ASSET_SAVED: &str =
    "read by the app at run time (an asset or a runtime template): no build; open pages update";

/// The asset directories looked for in the handler package when `asset_dirs` is not set.
pub const DEFAULT_ASSET_DIRS: [&str; 3] = ["assets", "static", "public"];

/// Which saves are assets, for one handler package.
#[derive(Debug, Clone)]
pub struct BrowserFiles {
    /// Absolute, with symbolic links resolved where they exist.
    asset_dirs: Vec<PathBuf>,
    templates: Vec<Glob>,
    package_root: PathBuf,
    /// Cargo's dep-info file of the last successful build (`lib<name>.d` next to the library).
    dep_info: Option<PathBuf>,
}

impl BrowserFiles {
    /// The asset directories and template globs of `section`, relative to `package_root` (the
    /// handler package's directory, where generations run: the paths mean what they mean in the
    /// app's code).
    pub fn new(section: &BrowserSection, package_root: &Path) -> Self {
        let package_root = resolve(package_root);
        let asset_dirs = match &section.asset_dirs {
            Some(dirs) => dirs.iter().map(|dir| resolve(&package_root.join(dir))).collect(),
            None => DEFAULT_ASSET_DIRS
                .iter()
                .map(|dir| package_root.join(dir))
                .filter(|dir| dir.is_dir())
                .map(|dir| resolve(&dir))
                .collect(),
        };
        let templates = section.runtime_templates.iter().map(|glob| Glob::new(glob)).collect();
        Self { asset_dirs, templates, package_root, dep_info: None }
    }

    /// The asset directories in use (for the log).
    pub fn asset_dirs(&self) -> &[PathBuf] {
        &self.asset_dirs
    }

    /// Remembers the build that serves now: its dep-info says which files it was compiled from.
    pub fn built(&mut self, artifact: &Path) {
        self.dep_info = Some(artifact.with_extension("d"));
    }

    /// `Some` when a save of `path` changes something the app reads at run time (no build),
    /// `None` when the save is for the builder to judge.
    pub fn asset(&self, path: &Path) -> Option<ChangedAsset> {
        if !path.is_absolute() {
            return None;
        }
        let path = resolve(path);
        let relative = self
            .asset_dirs
            .iter()
            .find_map(|dir| path.strip_prefix(dir).ok())
            .filter(|relative| !relative.as_os_str().is_empty())
            .or_else(|| {
                let relative = path.strip_prefix(&self.package_root).ok()?;
                let text = slashed(relative)?;
                self.templates.iter().any(|glob| glob.matches(&text)).then_some(relative)
            })?;
        let relative_path = slashed(relative)?;
        if self.compiled_from(&path) {
            return None;
        }
        Some(ChangedAsset { path, relative_path })
    }

    /// True when the last build read `path` (an `include_str!`, a compile-time template).
    fn compiled_from(&self, path: &Path) -> bool {
        let Some(dep_info) = &self.dep_info else { return false };
        let Ok(text) = std::fs::read_to_string(dep_info) else { return false };
        dependencies_of_dep_info(&text).iter().any(|dependency| resolve(dependency) == path)
    }
}

/// `relative` with `/` between its components; `None` for a path that climbs (`..`) or is not
/// UTF-8.
fn slashed(relative: &Path) -> Option<String> {
    let mut parts = Vec::new();
    for component in relative.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str()?),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// `path` with symbolic links, `.` and `..` resolved, as far as it exists.
fn resolve(path: &Path) -> PathBuf {
    if let Ok(real) = path.canonicalize() {
        return real;
    }
    let normal = crate::config::normalized(path);
    match (normal.parent().map(resolve), normal.file_name()) {
        (Some(parent), Some(name)) => parent.join(name),
        _ => normal,
    }
}

/// Every file a Makefile-style dep-info file (as cargo and rustc write them) names as a
/// dependency: `target: dep dep \` lines, with `\ ` for a space in a path, and rustc's `dep:`
/// lines without dependencies.
pub fn dependencies_of_dep_info(text: &str) -> Vec<PathBuf> {
    let mut dependencies = Vec::new();
    let joined = text.replace("\\\n", " ");
    for line in joined.lines() {
        let words = split_words(line);
        let Some(colon) = words.iter().position(|word| word.ends_with(':')) else { continue };
        let after: Vec<&String> = words[colon + 1..].iter().collect();
        if after.is_empty() {
            // `path:` — rustc lists each input again as a target of its own.
            for target in &words[..=colon] {
                let target = target.strip_suffix(':').unwrap_or(target);
                if !target.is_empty() {
                    dependencies.push(PathBuf::from(target));
                }
            }
        } else {
            dependencies.extend(after.into_iter().map(PathBuf::from));
        }
    }
    dependencies.sort();
    dependencies.dedup();
    dependencies
}

/// Splits a dep-info line at spaces that are not escaped (`\ `).
fn split_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut characters = line.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '\\' if characters.peek() == Some(&' ') => {
                word.push(' ');
                characters.next();
            }
            ' ' | '\t' => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            other => word.push(other),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// A path glob of `runtime_templates`: `/`-separated components, `**` for any number of
/// components, `*` for any characters within one, `?` for one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    components: Vec<String>,
}

impl Glob {
    pub fn new(pattern: &str) -> Self {
        let components = pattern
            .split('/')
            .filter(|component| !component.is_empty() && *component != ".")
            .map(str::to_owned)
            .collect();
        Self { components }
    }

    /// Whether a `/`-separated relative path matches.
    pub fn matches(&self, path: &str) -> bool {
        let parts: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
        match_components(&self.components, &parts)
    }
}

fn match_components(pattern: &[String], parts: &[&str]) -> bool {
    match pattern.split_first() {
        None => parts.is_empty(),
        Some((first, rest)) if first == "**" => {
            (0..=parts.len()).any(|skip| match_components(rest, &parts[skip..]))
        }
        Some((first, rest)) => match parts.split_first() {
            Some((part, remaining)) => {
                match_component(first.as_bytes(), part.as_bytes())
                    && match_components(rest, remaining)
            }
            None => false,
        },
    }
}

fn match_component(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| match_component(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && match_component(rest, &text[1..]),
        Some((byte, rest)) => text.first() == Some(byte) && match_component(rest, &text[1..]),
    }
}

/// Checks a `runtime_templates` glob as `hotswap.toml` is read: relative, without `..`.
pub fn check_glob(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("a glob must not be empty".to_owned());
    }
    if pattern.starts_with('/') {
        return Err(format!(
            "{pattern:?} is absolute; write it relative to the handler package, like \"templates/**/*.html\""
        ));
    }
    if pattern.split('/').any(|component| component == "..") {
        return Err(format!("{pattern:?} climbs out of the handler package with `..`"));
    }
    if pattern.contains(['{', '[']) {
        return Err(format!(
            "{pattern:?} uses `{{` or `[`, which these globs do not have: use `*`, `?` and `**`, one glob per pattern"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(asset_dirs: Option<&[&str]>, templates: &[&str]) -> BrowserSection {
        BrowserSection {
            live_reload: true,
            asset_dirs: asset_dirs.map(|dirs| dirs.iter().map(PathBuf::from).collect()),
            runtime_templates: templates.iter().map(|glob| (*glob).to_owned()).collect(),
        }
    }

    #[test]
    fn globs_match_components() {
        let glob = Glob::new("templates/**/*.html");
        assert!(glob.matches("templates/index.html"));
        assert!(glob.matches("templates/pages/about/index.html"));
        assert!(!glob.matches("templates/index.htm"));
        assert!(!glob.matches("src/templates/index.html"));
        assert!(Glob::new("*.hbs").matches("page.hbs"));
        assert!(!Glob::new("*.hbs").matches("views/page.hbs"));
        assert!(Glob::new("views/page?.tera").matches("views/page1.tera"));
        assert!(Glob::new("**").matches("anything/at/all"));
        assert!(check_glob("templates/*.html").is_ok());
        assert!(check_glob("/abs/*.html").unwrap_err().contains("absolute"));
        assert!(check_glob("../x/*.html").unwrap_err().contains(".."));
        assert!(check_glob("{a,b}.html").unwrap_err().contains("one glob per pattern"));
    }

    #[test]
    fn dep_info_lists_every_input() {
        let text = "/w/target/debug/libsite.so: /w/site/src/lib.rs /w/site/templates/page\\ one.html \\\n  /w/site/assets/embedded.css\n\n/w/site/src/lib.rs:\n";
        assert_eq!(
            dependencies_of_dep_info(text),
            [
                PathBuf::from("/w/site/assets/embedded.css"),
                PathBuf::from("/w/site/src/lib.rs"),
                PathBuf::from("/w/site/templates/page one.html"),
            ]
        );
    }

    #[test]
    fn assets_templates_and_compiled_files() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().canonicalize().unwrap();
        for dir in ["assets/css", "static", "templates", "src"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        // Defaults: the directories that exist (`public/` does not).
        let files = BrowserFiles::new(&section(None, &["templates/*.html"]), &root);
        assert_eq!(files.asset_dirs(), [root.join("assets"), root.join("static")]);
        let css = files.asset(&root.join("assets/css/site.css")).unwrap();
        assert_eq!(css.relative_path, "css/site.css");
        assert_eq!(files.asset(&root.join("static/logo.svg")).unwrap().relative_path, "logo.svg");
        let template = files.asset(&root.join("templates/about.html")).unwrap();
        assert_eq!(template.relative_path, "templates/about.html");
        assert_eq!(files.asset(&root.join("src/lib.rs")), None);
        assert_eq!(files.asset(&root.join("templates/nested/x.html")), None);
        assert_eq!(files.asset(&root.join("public/x.css")), None);
        assert_eq!(files.asset(&root.join("assets/../src/lib.rs")), None);
        assert_eq!(files.asset(Path::new("assets/site.css")), None, "relative paths are not");

        // A file the last build read (include_str!, askama) builds.
        let mut files = files;
        std::fs::write(root.join("assets/css/site.css"), "body {}").unwrap();
        std::fs::write(root.join("templates/about.html"), "<p>").unwrap();
        let artifact = root.join("target/debug/libsite.so");
        std::fs::create_dir_all(artifact.parent().unwrap()).unwrap();
        std::fs::write(
            artifact.with_extension("d"),
            format!(
                "{}: {} {}\n",
                artifact.display(),
                root.join("src/lib.rs").display(),
                root.join("templates/about.html").display()
            ),
        )
        .unwrap();
        files.built(&artifact);
        assert_eq!(files.asset(&root.join("templates/about.html")), None);
        assert!(files.asset(&root.join("assets/css/site.css")).is_some());

        // Configured directories replace the defaults.
        let files = BrowserFiles::new(&section(Some(&["static"]), &[]), &root);
        assert_eq!(files.asset_dirs(), [root.join("static")]);
        assert_eq!(files.asset(&root.join("assets/css/site.css")), None);
        let none = BrowserFiles::new(&section(Some(&[]), &[]), &root);
        assert_eq!(none.asset(&root.join("static/logo.svg")), None);
    }
}
