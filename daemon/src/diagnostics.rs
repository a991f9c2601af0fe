//! Compiler messages as the protocol's diagnostics: absolute file paths and LSP ranges (lines from
//! 0, characters in UTF-16 code units), in the way rust-analyzer maps cargo's JSON.

use std::path::Path;

use cargo_metadata::diagnostic::{Diagnostic as CargoDiagnostic, DiagnosticLevel, DiagnosticSpan};
use hotswap_protocol::events::{Diagnostic, Position, Range, RelatedInformation, Severity};

/// Converts one compiler message. `workspace_root` is the cargo workspace root, which span file
/// names are relative to. Returns `None` for messages that are not about the code (e.g. "aborting
/// due to previous error").
pub fn from_cargo(message: &CargoDiagnostic, workspace_root: &Path) -> Option<Diagnostic> {
    let severity = severity(&message.level)?;
    if message.spans.is_empty() && is_summary(&message.message) {
        return None;
    }
    let primary = message
        .spans
        .iter()
        .find(|span| span.is_primary)
        .map(|span| original_span(span, workspace_root));
    let mut text = message.message.clone();
    let mut related = Vec::new();
    for span in &message.spans {
        if span.is_primary && span.label.is_none() {
            continue;
        }
        let span = original_span(span, workspace_root);
        if let Some(label) = &span.label
            && !span.is_primary
        {
            related.push(RelatedInformation {
                file: workspace_root.join(&span.file_name),
                range: range(span),
                message: label.clone(),
            });
        }
    }
    for child in &message.children {
        let child_text = match severity_name(&child.level) {
            Some(kind) => format!("{kind}: {}", child.message),
            None => child.message.clone(),
        };
        match child.spans.iter().find(|span| span.is_primary).or(child.spans.first()) {
            Some(span) => {
                let span = original_span(span, workspace_root);
                let suggestion = span
                    .suggested_replacement
                    .as_ref()
                    .filter(|replacement| !replacement.is_empty())
                    .map(|replacement| format!(": `{replacement}`"))
                    .unwrap_or_default();
                related.push(RelatedInformation {
                    file: workspace_root.join(&span.file_name),
                    range: range(span),
                    message: format!("{child_text}{suggestion}"),
                });
            }
            None => {
                text.push('\n');
                text.push_str(&child_text);
            }
        }
    }
    Some(Diagnostic {
        severity,
        code: message.code.as_ref().map(|code| code.code.clone()),
        message: text,
        file: primary.map(|span| workspace_root.join(&span.file_name)),
        range: primary.map(range),
        rendered: message.rendered.clone(),
        related,
    })
}

fn severity(level: &DiagnosticLevel) -> Option<Severity> {
    Some(match level {
        DiagnosticLevel::Ice | DiagnosticLevel::Error => Severity::Error,
        DiagnosticLevel::Warning => Severity::Warning,
        DiagnosticLevel::Note | DiagnosticLevel::FailureNote => Severity::Note,
        DiagnosticLevel::Help => Severity::Help,
        _ => return None,
    })
}

fn severity_name(level: &DiagnosticLevel) -> Option<&'static str> {
    Some(match level {
        DiagnosticLevel::Note | DiagnosticLevel::FailureNote => "note",
        DiagnosticLevel::Help => "help",
        DiagnosticLevel::Warning => "warning",
        DiagnosticLevel::Error | DiagnosticLevel::Ice => "error",
        _ => return None,
    })
}

/// rustc's closing lines ("aborting due to 2 previous errors", "N warnings emitted"), which
/// repeat what the other messages say.
fn is_summary(message: &str) -> bool {
    message.starts_with("aborting due to")
        || message.ends_with("warnings emitted")
        || message.ends_with("warning emitted")
        || message.starts_with("For more information about")
        || message.starts_with("Some errors have detailed explanations")
}

/// For a span inside a macro expansion from outside the workspace (e.g. the standard library),
/// the place in the workspace that invoked the macro, as rust-analyzer does.
fn original_span<'a>(span: &'a DiagnosticSpan, workspace_root: &Path) -> &'a DiagnosticSpan {
    let mut current = span;
    while !is_workspace_file(&current.file_name, workspace_root) {
        match &current.expansion {
            Some(expansion) => current = &expansion.span,
            None => return span,
        }
    }
    current
}

fn is_workspace_file(file_name: &str, workspace_root: &Path) -> bool {
    !file_name.starts_with('<') && workspace_root.join(file_name).starts_with(workspace_root)
}

/// The span as an LSP range: rustc counts lines from 1 and columns from 1 in characters; LSP
/// counts both from 0, columns in UTF-16 code units. The span's own text lines give the
/// characters to convert.
fn range(span: &DiagnosticSpan) -> Range {
    let first_line = span.text.first().map(|line| line.text.as_str());
    let last_line = span.text.last().map(|line| line.text.as_str());
    Range {
        start: Position {
            line: span.line_start.saturating_sub(1) as u32,
            character: utf16_column(first_line, span.column_start),
        },
        end: Position {
            line: span.line_end.saturating_sub(1) as u32,
            character: utf16_column(last_line, span.column_end),
        },
    }
}

fn utf16_column(line: Option<&str>, column: usize) -> u32 {
    let characters = column.saturating_sub(1);
    match line {
        Some(line) => {
            let mut units = 0;
            let mut chars = line.chars();
            for _ in 0..characters {
                units += chars.next().map_or(1, char::len_utf16);
            }
            units as u32
        }
        None => characters as u32,
    }
}

/// A plain-text rendering of errors, for the CLI and `buildFailed.rendered`.
pub fn render_errors(diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .filter(|diagnostic| diagnostic.severity == Severity::Error)
        .map(|diagnostic| {
            diagnostic
                .rendered
                .clone()
                .unwrap_or_else(|| format!("error: {}\n", diagnostic.message))
        })
        .collect::<Vec<_>>()
        .join("")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real rustc message (trimmed) with a non-ASCII line, a secondary span and a help child.
    const MISMATCH: &str = r#"{"$message_type":"diagnostic","message":"mismatched types","code":{"code":"E0308","explanation":null},"level":"error","spans":[{"file_name":"src/lib.rs","byte_start":120,"byte_end":127,"line_start":12,"line_end":12,"column_start":19,"column_end":26,"is_primary":true,"text":[{"text":"    let café: u32 = \"hello\";","highlight_start":19,"highlight_end":26}],"label":"expected `u32`, found `&str`","suggested_replacement":null,"suggestion_applicability":null,"expansion":null},{"file_name":"src/lib.rs","byte_start":111,"byte_end":114,"line_start":12,"line_end":12,"column_start":15,"column_end":18,"is_primary":false,"text":[{"text":"    let café: u32 = \"hello\";","highlight_start":15,"highlight_end":18}],"label":"expected due to this","suggested_replacement":null,"suggestion_applicability":null,"expansion":null}],"children":[{"message":"try using a conversion method","code":null,"level":"help","spans":[{"file_name":"src/lib.rs","byte_start":120,"byte_end":127,"line_start":12,"line_end":12,"column_start":19,"column_end":26,"is_primary":true,"text":[{"text":"    let café: u32 = \"hello\";","highlight_start":19,"highlight_end":26}],"label":null,"suggested_replacement":"\"hello\".parse()","suggestion_applicability":"MaybeIncorrect","expansion":null}],"children":[],"rendered":null},{"message":"for more see the book","code":null,"level":"note","spans":[],"children":[],"rendered":null}],"rendered":"error[E0308]: mismatched types\n  --> src/lib.rs:12:19\n"}"#;

    fn parse(json: &str) -> CargoDiagnostic {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn maps_a_compiler_error_to_an_lsp_diagnostic() {
        let diagnostic = from_cargo(&parse(MISMATCH), Path::new("/w/app")).unwrap();
        assert_eq!(diagnostic.severity, Severity::Error);
        assert_eq!(diagnostic.code.as_deref(), Some("E0308"));
        assert_eq!(diagnostic.message, "mismatched types\nnote: for more see the book");
        assert_eq!(diagnostic.file.as_deref(), Some(Path::new("/w/app/src/lib.rs")));
        // Columns 19..26 in characters are 18..25 in UTF-16 here ("é" is one unit).
        assert_eq!(
            diagnostic.range,
            Some(Range {
                start: Position { line: 11, character: 18 },
                end: Position { line: 11, character: 25 }
            })
        );
        assert_eq!(diagnostic.related.len(), 2);
        assert_eq!(diagnostic.related[0].message, "expected due to this");
        assert_eq!(
            diagnostic.related[1].message,
            "help: try using a conversion method: `\"hello\".parse()`"
        );
        assert!(diagnostic.rendered.unwrap().starts_with("error[E0308]"));
    }

    #[test]
    fn counts_astral_characters_as_two_utf16_units() {
        assert_eq!(utf16_column(Some("a😀b = 1"), 4), 4);
        assert_eq!(utf16_column(Some("abc"), 1), 0);
        assert_eq!(utf16_column(None, 7), 6);
    }

    #[test]
    fn drops_the_summary_lines() {
        let summary = r#"{"message":"aborting due to 1 previous error","code":null,"level":"error","spans":[],"children":[],"rendered":"error: aborting due to 1 previous error\n"}"#;
        assert_eq!(from_cargo(&parse(summary), Path::new("/w")), None);
        let linker = r#"{"message":"linking with `cc` failed: exit status: 1","code":null,"level":"error","spans":[],"children":[],"rendered":"error: linking with `cc` failed\n"}"#;
        let diagnostic = from_cargo(&parse(linker), Path::new("/w")).unwrap();
        assert_eq!((diagnostic.file, diagnostic.range), (None, None));
    }

    #[test]
    fn a_macro_error_points_at_the_call_in_the_workspace() {
        let json = r#"{"message":"boom","code":null,"level":"error","spans":[{"file_name":"/rustc/abc/library/core/src/macros/mod.rs","byte_start":0,"byte_end":1,"line_start":100,"line_end":100,"column_start":1,"column_end":2,"is_primary":true,"text":[],"label":null,"suggested_replacement":null,"suggestion_applicability":null,"expansion":{"span":{"file_name":"src/lib.rs","byte_start":10,"byte_end":20,"line_start":3,"line_end":3,"column_start":5,"column_end":15,"is_primary":false,"text":[{"text":"    panic!(\"x\")","highlight_start":5,"highlight_end":15}],"label":null,"suggested_replacement":null,"suggestion_applicability":null,"expansion":null},"macro_decl_name":"panic!","def_site_span":null}}],"children":[],"rendered":null}"#;
        let diagnostic = from_cargo(&parse(json), Path::new("/w")).unwrap();
        assert_eq!(diagnostic.file.as_deref(), Some(Path::new("/w/src/lib.rs")));
        assert_eq!(diagnostic.range.unwrap().start, Position { line: 2, character: 4 });
    }
}
