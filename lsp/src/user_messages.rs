//! The sentences the user reads (messages and progress text), as pure functions of the events.

use std::path::Path;

use hotswap_protocol::events::{
    AssetsChanged, BuildFinished, BuildOutcome, BuildProgress, BuildReason, BuildStarted,
    Diagnostic, GenerationCrashed, GenerationRetired, HandlerPanicked, RetireOutcome, Severity,
    SwapFailed, SwapFinished,
};
use hotswap_protocol::messages::{DidSaveResult, RefusedSwap, ReloadOutcome, StatusResult};

/// Milliseconds as people read them: `85 ms`, `1.8 s`.
pub(crate) fn duration_text(milliseconds: f64) -> String {
    if milliseconds < 1000.0 {
        format!("{} ms", milliseconds.round() as u64)
    } else {
        format!("{:.1} s", milliseconds / 1000.0)
    }
}

/// `path` relative to the workspace root when it is inside it.
fn short_path(path: &Path, root: Option<&Path>) -> String {
    root.and_then(|root| path.strip_prefix(root).ok()).unwrap_or(path).display().to_string()
}

/// The command that starts the daemon of `root`.
pub(crate) fn serve_command(hotswap_path: &str, root: &Path) -> String {
    format!("{hotswap_path} serve --workspace {}", root.display())
}

pub(crate) fn no_daemon(root: &Path, hotswap_path: &str) -> String {
    format!(
        "hotswap: no daemon runs for {}. Start it with `{}` (or set `autoStart` in the language \
         server's initializationOptions); saves are forwarded as soon as it runs.",
        root.display(),
        serve_command(hotswap_path, root)
    )
}

pub(crate) fn no_workspace() -> String {
    "hotswap: no hotswap.toml in the editor's workspace folders or above the files saved so far; \
     open a file of a hotswap app (created with `hotswap new`)."
        .to_owned()
}

pub(crate) fn connected(root: &Path, listen_address: &str, generation: Option<u64>) -> String {
    match generation {
        Some(generation) => format!(
            "hotswap: connected to the daemon for {}; generation {generation} serves http://{listen_address}",
            root.display()
        ),
        None => format!(
            "hotswap: connected to the daemon for {}; it serves http://{listen_address} once its first build is loaded",
            root.display()
        ),
    }
}

pub(crate) fn daemon_went_away(root: &Path) -> String {
    format!(
        "hotswap: the daemon for {} stopped; saves are forwarded again when it is back.",
        root.display()
    )
}

pub(crate) fn cannot_connect(root: &Path, error: &str) -> String {
    format!("hotswap: cannot use the daemon for {}: {error}", root.display())
}

pub(crate) fn auto_starting(command: &str, pid: Option<u32>, log: &Path) -> String {
    match pid {
        Some(pid) => format!(
            "hotswap: started `{command}` (pid {pid}; its output goes to {})",
            log.display()
        ),
        None => format!("hotswap: started `{command}` (its output goes to {})", log.display()),
    }
}

pub(crate) fn auto_start_failed(command: &str, error: &str) -> String {
    format!("hotswap: could not start `{command}`: {error}")
}

pub(crate) fn auto_started_daemon_exited(command: &str, status: &str, output_tail: &str) -> String {
    let mut text = format!("hotswap: `{command}` exited ({status}).");
    if !output_tail.trim().is_empty() {
        text.push_str(" Its last output:\n");
        text.push_str(output_tail.trim_end());
    }
    text
}

pub(crate) fn save_not_forwarded(path: &Path) -> String {
    format!("hotswap: {} saved, but no daemon runs; not rebuilt", path.display())
}

pub(crate) fn saves_ignored(result: &DidSaveResult, root: Option<&Path>) -> Option<String> {
    if result.ignored.is_empty() {
        return None;
    }
    let items: Vec<String> = result
        .ignored
        .iter()
        .map(|ignored| format!("{} ({})", short_path(&ignored.path, root), ignored.reason))
        .collect();
    Some(format!("hotswap: not rebuilding for {}", items.join(", ")))
}

pub(crate) fn build_title() -> &'static str {
    "hotswap build"
}

pub(crate) fn build_started(event: &BuildStarted, root: Option<&Path>) -> String {
    match event.reason {
        BuildReason::Initial => "first build".to_owned(),
        BuildReason::Reload => "reload".to_owned(),
        BuildReason::Save => match event.paths.as_slice() {
            [] => "saved".to_owned(),
            [path] => format!("{} saved", short_path(path, root)),
            [path, rest @ ..] => {
                format!("{} and {} more saved", short_path(path, root), rest.len())
            }
        },
    }
}

pub(crate) fn build_progress(event: &BuildProgress) -> String {
    if event.blocked {
        format!("waiting for another cargo to release the build lock ({})", event.message)
    } else {
        event.message.clone()
    }
}

fn count(diagnostics: &[Diagnostic], severity: Severity) -> usize {
    diagnostics.iter().filter(|diagnostic| diagnostic.severity == severity).count()
}

fn plural(number: usize, word: &str) -> String {
    if number == 1 { format!("1 {word}") } else { format!("{number} {word}s") }
}

/// The first error as `file:line:column: message`, for the one-line failure message.
fn first_error(diagnostics: &[Diagnostic], root: Option<&Path>) -> Option<String> {
    let error = diagnostics.iter().find(|diagnostic| diagnostic.severity == Severity::Error)?;
    let place = match (&error.file, &error.range) {
        (Some(file), Some(range)) => format!(
            "{}:{}:{}: ",
            short_path(file, root),
            range.start.line + 1,
            range.start.character + 1
        ),
        (Some(file), None) => format!("{}: ", short_path(file, root)),
        _ => String::new(),
    };
    Some(format!("{place}{}", error.message))
}

/// The end of a build's progress: what happened, in a few words.
pub(crate) fn build_finished_progress(event: &BuildFinished) -> String {
    let took = duration_text(event.duration_ms);
    match event.outcome {
        BuildOutcome::Succeeded => format!("built in {took}; loading the new code"),
        BuildOutcome::Unchanged => {
            format!("built in {took}; the code that serves is already this one")
        }
        BuildOutcome::Failed => {
            format!(
                "build failed in {took}: {}",
                plural(count(&event.diagnostics, Severity::Error), "error")
            )
        }
        BuildOutcome::Cancelled => "build cancelled".to_owned(),
    }
}

/// The message for a failed build, or `None` for outcomes that need no message.
pub(crate) fn build_failed(
    event: &BuildFinished,
    serving_generation: Option<u64>,
    root: Option<&Path>,
) -> Option<String> {
    if event.outcome != BuildOutcome::Failed {
        return None;
    }
    let errors = count(&event.diagnostics, Severity::Error);
    let mut text = format!("hotswap: build {} failed ({})", event.build, plural(errors, "error"));
    if let Some(first) = first_error(&event.diagnostics, root) {
        text.push_str(": ");
        text.push_str(&first);
    }
    match serving_generation {
        Some(generation) => text.push_str(&format!("; generation {generation} keeps serving")),
        None => text.push_str("; the old code keeps serving"),
    }
    Some(text)
}

pub(crate) fn swap_finished(event: &SwapFinished) -> String {
    let mut text = if let Some(crashed) = event.after_crash {
        format!(
            "hotswap: generation {} serves again after generation {crashed} crashed ({})",
            event.generation,
            if event.rollback { "the previous build" } else { "the same build" }
        )
    } else if event.rollback {
        format!("hotswap: rolled back; generation {} serves the previous code", event.generation)
    } else {
        format!("hotswap: generation {} serves the new code", event.generation)
    };
    let mut timings = Vec::new();
    if let Some(build_ms) = event.build_ms {
        timings.push(format!("build {}", duration_text(build_ms)));
    }
    timings.push(format!("swap {}", duration_text(event.swap_ms)));
    if let Some(total_ms) = event.total_ms {
        timings.push(format!("save to serving {}", duration_text(total_ms)));
    }
    text.push_str(&format!(" ({})", timings.join(", ")));
    for warning in &event.warnings {
        text.push_str(&format!("; {warning}"));
    }
    text
}

pub(crate) fn swap_finished_progress(event: &SwapFinished) -> String {
    format!("generation {} serves ({})", event.generation, duration_text(event.swap_ms))
}

pub(crate) fn swap_failed(event: &SwapFailed, serving_generation: Option<u64>) -> String {
    let keeps = match serving_generation {
        Some(generation) => format!("generation {generation} keeps serving"),
        None => "nothing is served yet".to_owned(),
    };
    format!(
        "hotswap: the new code was not loaded (stage {}): {}; {keeps}",
        event.stage, event.message
    )
}

pub(crate) fn refused_swap(refused: &RefusedSwap) -> String {
    let serving = match refused.serving {
        Some(generation) => format!("generation {generation} keeps serving"),
        None => "nothing serves".to_owned(),
    };
    format!(
        "hotswap: {serving}: the swap to {} was refused at the {} stage: {}; the code on disk is \
         not what serves until a swap succeeds",
        match refused.build {
            Some(build) => format!("build {build}"),
            None => format!("generation {}", refused.generation),
        },
        refused.stage,
        refused.message
    )
}

pub(crate) fn swap_failed_progress(event: &SwapFailed) -> String {
    format!("not loaded (stage {})", event.stage)
}

/// The address a browser opens for an app listening on `listen_address`: an unspecified host
/// (`0.0.0.0`, `[::]`) becomes the loopback address.
pub(crate) fn browser_url(listen_address: &str) -> String {
    let address = if let Some(port) = listen_address.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen_address.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen_address.to_owned()
    };
    format!("http://{address}/")
}

pub(crate) fn opened_in_browser(url: &str) -> String {
    format!("hotswap: opened {url} in the browser; the page reloads after each swap")
}

pub(crate) fn open_in_browser_yourself(url: &str) -> String {
    format!(
        "hotswap: the app serves {url}; open it in your browser (this editor does not let a language server open it)"
    )
}

pub(crate) fn browser_not_opened(url: &str, why: &str) -> String {
    format!("hotswap: could not open {url} in the browser ({why}); open it yourself")
}

pub(crate) fn assets_changed(event: &AssetsChanged) -> String {
    let files: Vec<&str> = event.files.iter().map(|file| file.relative_path.as_str()).collect();
    format!("hotswap: saved {} (read at run time: no build; open pages update)", files.join(", "))
}

pub(crate) fn generation_retired(event: &GenerationRetired) -> String {
    match event.outcome {
        RetireOutcome::Ended => format!(
            "hotswap: generation {} ended after draining {}",
            event.generation,
            duration_text(event.drain_ms)
        ),
        RetireOutcome::Killed => format!(
            "hotswap: generation {} was killed after draining {}{}",
            event.generation,
            duration_text(event.drain_ms),
            event.reason.as_ref().map(|reason| format!(" ({reason})")).unwrap_or_default()
        ),
    }
}

pub(crate) fn generation_crashed(event: &GenerationCrashed) -> String {
    let mut text = format!("hotswap: {}", event.message);
    if let Some(line) = event.last_words.last()
        && !event.message.contains(line.as_str())
    {
        text.push_str(&format!(" (last words: {line})"));
    }
    text
}

pub(crate) fn handler_panicked(event: &HandlerPanicked) -> String {
    let request =
        event.request.as_ref().map(|request| format!(" answering {request}")).unwrap_or_default();
    match &event.location {
        Some(location) => format!(
            "hotswap: a request handler of generation {}{request} panicked at {location}: {} (the request got a 500)",
            event.generation, event.message
        ),
        None => format!(
            "hotswap: a request handler of generation {}{request} panicked: {} (the request got a 500)",
            event.generation, event.message
        ),
    }
}

/// A `reload` or `rollback` answer, for the log (the events tell the user what happened).
pub(crate) fn reload_outcome(command: &str, outcome: &ReloadOutcome) -> String {
    match outcome {
        ReloadOutcome::Swapped { generation, .. } => {
            format!("hotswap: {command}: generation {generation} serves")
        }
        ReloadOutcome::Unchanged { .. } => format!("hotswap: {command}: nothing changed"),
        ReloadOutcome::BuildFailed { rendered, .. } => {
            format!("hotswap: {command}: the build failed:\n{rendered}")
        }
        ReloadOutcome::SwapFailed { stage, message, .. } => {
            format!("hotswap: {command}: not loaded (stage {stage}): {message}")
        }
        ReloadOutcome::Cancelled { reason } => format!("hotswap: {command}: cancelled ({reason})"),
    }
}

pub(crate) fn command_failed(command: &str, error: &str) -> String {
    format!("hotswap: {command} failed: {error}")
}

pub(crate) fn status_summary(status: &StatusResult) -> String {
    let serving = match status.current_generation {
        Some(generation) => {
            format!("generation {generation} serves http://{}", status.listen_address)
        }
        None => format!("nothing serves http://{} yet", status.listen_address),
    };
    let mut text = format!("hotswap: {serving}");
    let draining =
        status.generations.len().saturating_sub(usize::from(status.current_generation.is_some()));
    if draining > 0 {
        text.push_str(&format!(", {draining} draining"));
    }
    if status.building {
        text.push_str("; building now");
    } else if let Some(last) = &status.last_build {
        let outcome = match last.outcome {
            BuildOutcome::Succeeded => "succeeded",
            BuildOutcome::Unchanged => "changed nothing",
            BuildOutcome::Failed => "failed",
            BuildOutcome::Cancelled => "was cancelled",
        };
        text.push_str(&format!("; last build {outcome} in {}", duration_text(last.duration_ms)));
    }
    if let Some(refused) = &status.refused_swap {
        text.push_str(&format!(
            "; the last swap was refused at the {} stage ({}): the code on disk is not what serves",
            refused.stage, refused.message
        ));
    }
    if let Some(crash) = &status.last_crash {
        text.push_str(&format!(
            "; last crash {} ago: {}",
            duration_text(crash.ago_ms as f64),
            crash.crash.message
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotswap_protocol::events::{Position, Range, SwapStage, SwapStages};

    fn error_at(file: &str, line: u32, character: u32, message: &str) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code: Some("E0308".into()),
            message: message.into(),
            file: Some(file.into()),
            range: Some(Range {
                start: Position { line, character },
                end: Position { line, character: character + 3 },
            }),
            rendered: None,
            related: vec![],
        }
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(4.2), "4 ms");
        assert_eq!(duration_text(330.0), "330 ms");
        assert_eq!(duration_text(1840.0), "1.8 s");
    }

    #[test]
    fn a_failed_build_names_the_first_error_where_it_is_and_what_keeps_serving() {
        let event = BuildFinished {
            build: 7,
            outcome: BuildOutcome::Failed,
            duration_ms: 400.0,
            diagnostics: vec![
                error_at("/app/src/lib.rs", 9, 4, "mismatched types"),
                error_at("/app/src/routes.rs", 1, 0, "cannot find value `x`"),
            ],
            built_with: None,
        };
        assert_eq!(
            build_failed(&event, Some(3), Some(Path::new("/app"))).unwrap(),
            "hotswap: build 7 failed (2 errors): src/lib.rs:10:5: mismatched types; generation 3 keeps serving"
        );
        assert_eq!(build_finished_progress(&event), "build failed in 400 ms: 2 errors");
        let succeeded = BuildFinished { outcome: BuildOutcome::Succeeded, ..event };
        assert_eq!(build_failed(&succeeded, Some(3), None), None);
    }

    #[test]
    fn swaps_say_which_generation_serves_and_how_long_it_took() {
        let event = SwapFinished {
            after_crash: None,
            generation: 4,
            previous_generation: Some(3),
            rollback: false,
            swap_ms: 3.6,
            total_ms: Some(412.0),
            build_ms: Some(330.0),
            stages: SwapStages::default(),
            warnings: vec!["state started fresh".into()],
        };
        assert_eq!(
            swap_finished(&event),
            "hotswap: generation 4 serves the new code (build 330 ms, swap 4 ms, save to serving 412 ms); state started fresh"
        );
        let rollback = SwapFinished {
            rollback: true,
            build_ms: None,
            total_ms: None,
            warnings: vec![],
            ..event
        };
        assert_eq!(
            swap_finished(&rollback),
            "hotswap: rolled back; generation 4 serves the previous code (swap 4 ms)"
        );
        let failed = SwapFailed {
            generation: 5,
            stage: SwapStage::Init,
            message: "app panicked".into(),
            state: None,
            diagnostics: vec![],
        };
        assert_eq!(
            swap_failed(&failed, Some(4)),
            "hotswap: the new code was not loaded (stage init): app panicked; generation 4 keeps serving"
        );
    }

    #[test]
    fn the_no_daemon_message_gives_the_command_to_run() {
        let text = no_daemon(Path::new("/home/me/shop"), "hotswap");
        assert!(text.contains("`hotswap serve --workspace /home/me/shop`"), "{text}");
        assert!(text.contains("autoStart"), "{text}");
    }

    #[test]
    fn build_progress_names_the_saved_file_relative_to_the_workspace() {
        let started = BuildStarted {
            build: 2,
            reason: BuildReason::Save,
            paths: vec!["/app/src/lib.rs".into(), "/app/src/db.rs".into()],
        };
        assert_eq!(build_started(&started, Some(Path::new("/app"))), "src/lib.rs and 1 more saved");
        let blocked = BuildProgress { build: 2, message: "Blocking".into(), blocked: true };
        assert!(build_progress(&blocked).starts_with("waiting for another cargo"));
    }

    #[test]
    fn browser_addresses_are_local_for_unspecified_hosts() {
        assert_eq!(browser_url("127.0.0.1:3000"), "http://127.0.0.1:3000/");
        assert_eq!(browser_url("0.0.0.0:8080"), "http://127.0.0.1:8080/");
        assert_eq!(browser_url("[::]:8080"), "http://[::1]:8080/");
        assert_eq!(browser_url("[::1]:3000"), "http://[::1]:3000/");
    }
}
