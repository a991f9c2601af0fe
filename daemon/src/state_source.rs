//! Pointing at the code a state refusal is about: the struct (and field) of the new `State` type
//! where the old state did not fit, found in the handler's sources, as a diagnostic editors show
//! next to the compiler's.

use std::path::{Path, PathBuf};

use hotswap_protocol::events::{Diagnostic, Position, Range, Severity, StateProblem};

/// The diagnostic for `problem`, at the field in its struct when the sources under `roots` have
/// them, else at the struct; `None` when the struct is not found.
pub fn locate(problem: &StateProblem, roots: &[PathBuf]) -> Option<Diagnostic> {
    let struct_name = problem.struct_name.as_deref()?;
    for root in roots {
        for file in rust_files(root) {
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            if let Some(range) = find(&text, struct_name, problem.field.as_deref()) {
                return Some(Diagnostic {
                    severity: Severity::Error,
                    code: Some("hotswap::state".to_owned()),
                    message: problem.message.clone(),
                    file: Some(file),
                    range: Some(range),
                    rendered: None,
                    related: Vec::new(),
                });
            }
        }
    }
    None
}

/// The `.rs` files of a package, without its build output.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut directories = vec![root.to_path_buf()];
    while let Some(directory) = directories.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if name == "target" || name.to_string_lossy().starts_with('.') {
                continue;
            }
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => directories.push(path),
                Ok(kind) if kind.is_file() && path.extension().is_some_and(|ext| ext == "rs") => {
                    files.push(path)
                }
                _ => {}
            }
        }
    }
    files.sort();
    files
}

/// The range of `field` inside `struct name { ... }` in `text`, or of the struct's name.
fn find(text: &str, name: &str, field: Option<&str>) -> Option<Range> {
    let lines: Vec<&str> = text.lines().collect();
    for (index, line) in lines.iter().enumerate() {
        let Some(column) = word_after(line, "struct ", name) else { continue };
        if let Some(field) = field {
            let mut depth = 0i32;
            let mut opened = false;
            for (offset, body_line) in lines[index..].iter().enumerate() {
                if opened || offset > 0 {
                    let trimmed = body_line.trim_start();
                    let declaration = ["pub(crate) ", "pub(super) ", "pub "]
                        .iter()
                        .fold(trimmed, |rest, prefix| rest.strip_prefix(prefix).unwrap_or(rest));
                    if depth == 1
                        && declaration.starts_with(field)
                        && declaration[field.len()..].trim_start().starts_with(':')
                    {
                        let start = body_line.len() - declaration.len();
                        return Some(range_of(index + offset, body_line, start, field.len()));
                    }
                }
                for character in body_line.chars() {
                    match character {
                        '{' => {
                            depth += 1;
                            opened = true;
                        }
                        '}' => depth -= 1,
                        _ => {}
                    }
                }
                if opened && depth <= 0 {
                    break;
                }
            }
        }
        return Some(range_of(index, line, column, name.len()));
    }
    None
}

/// Where `name` stands right after `keyword` in `line`, as a whole word.
fn word_after(line: &str, keyword: &str, name: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(found) = line[from..].find(keyword) {
        let start = from + found + keyword.len();
        let rest = &line[start..];
        if rest.starts_with(name)
            && !rest[name.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
            && (from + found == 0
                || !line[..from + found].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        {
            return Some(start);
        }
        from = start;
    }
    None
}

/// An LSP range (UTF-16 columns) over `length` bytes at byte `start` of `line`.
fn range_of(line_index: usize, line: &str, start: usize, length: usize) -> Range {
    let utf16 = |bytes: usize| line[..bytes.min(line.len())].encode_utf16().count() as u32;
    Range {
        start: Position { line: line_index as u32, character: utf16(start) },
        end: Position { line: line_index as u32, character: utf16(start + length) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "use serde::Deserialize;\n\n/// A to-do.\n#[derive(Deserialize)]\npub struct Todo {\n    pub title: String,\n    priority: u8,\n}\n\nstruct TodoList {\n    todos: Vec<Todo>,\n}\n";

    #[test]
    fn finds_the_field_in_its_struct_and_falls_back_to_the_struct() {
        let field = find(SOURCE, "Todo", Some("priority")).unwrap();
        assert_eq!((field.start.line, field.start.character, field.end.character), (6, 4, 12));
        let title = find(SOURCE, "Todo", Some("title")).unwrap();
        assert_eq!((title.start.line, title.start.character), (5, 8));
        // A field the struct no longer has (renamed): the struct itself.
        let gone = find(SOURCE, "Todo", Some("counter")).unwrap();
        assert_eq!((gone.start.line, gone.start.character, gone.end.character), (4, 11, 15));
        // `TodoList` is not `Todo`, and a field of another struct is not taken.
        let list = find(SOURCE, "TodoList", Some("priority")).unwrap();
        assert_eq!(list.start.line, 9);
        assert!(find(SOURCE, "Missing", None).is_none());
    }

    #[test]
    fn locates_in_a_package_directory() {
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(temp.path().join("src/model")).unwrap();
        std::fs::create_dir_all(temp.path().join("target/debug")).unwrap();
        std::fs::write(temp.path().join("target/debug/stale.rs"), SOURCE).unwrap();
        std::fs::write(temp.path().join("src/model/todo.rs"), SOURCE).unwrap();
        let problem = StateProblem {
            message: "missing field `priority`".into(),
            struct_name: Some("Todo".into()),
            field: Some("priority".into()),
            path: Some("items[\"3f2a\"]".into()),
        };
        let diagnostic = locate(&problem, &[temp.path().to_path_buf()]).unwrap();
        assert_eq!(diagnostic.file.unwrap(), temp.path().join("src/model/todo.rs"));
        assert_eq!(diagnostic.range.unwrap().start.line, 6);
        assert_eq!(diagnostic.code.as_deref(), Some("hotswap::state"));
    }
}
