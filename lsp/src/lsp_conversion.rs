//! Protocol types to LSP types: diagnostics, ranges and file URIs. The LSP types crate changes
//! between `tower-lsp-server` releases, so the conversions live here and nowhere else.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hotswap_protocol::events::{self, Severity};
use serde_json::json;
use tower_lsp_server::ls_types::{
    CodeDescription, Diagnostic, DiagnosticRelatedInformation, DiagnosticSeverity, DiagnosticTag,
    Location, NumberOrString, Position, Range, Uri,
};

/// What diagnostics say they come from, so that users can tell them from rust-analyzer's.
pub(crate) const DIAGNOSTIC_SOURCE: &str = "hotswap";

/// The local path a `file:` URI names, or `None` for other schemes.
pub(crate) fn file_path_of_uri(uri: &Uri) -> Option<PathBuf> {
    if !uri.scheme().as_str().eq_ignore_ascii_case("file") {
        return None;
    }
    uri.to_file_path().map(|path| path.into_owned())
}

/// The `file:` URI of an absolute path.
pub(crate) fn uri_of_file_path(path: &Path) -> Option<Uri> {
    Uri::from_file_path(path)
}

/// An LSP range from a protocol range. Both count lines from 0 and characters in UTF-16 code
/// units, so this only changes the type.
pub(crate) fn lsp_range(range: &events::Range) -> Range {
    Range {
        start: Position { line: range.start.line, character: range.start.character },
        end: Position { line: range.end.line, character: range.end.character },
    }
}

/// An LSP diagnostic from a compiler diagnostic of the daemon. `uri_of` gives the URI to use for
/// a file (the one the editor knows, when it opened the file under another spelling).
pub(crate) fn lsp_diagnostic(
    diagnostic: &events::Diagnostic,
    uri_of: &dyn Fn(&Path) -> Option<Uri>,
) -> Diagnostic {
    let related_information: Vec<DiagnosticRelatedInformation> = diagnostic
        .related
        .iter()
        .filter_map(|related| {
            Some(DiagnosticRelatedInformation {
                location: Location {
                    uri: uri_of(&related.file)?,
                    range: lsp_range(&related.range),
                },
                message: related.message.clone(),
            })
        })
        .collect();
    Diagnostic {
        range: diagnostic.range.as_ref().map(lsp_range).unwrap_or_default(),
        severity: Some(match diagnostic.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
            Severity::Note => DiagnosticSeverity::INFORMATION,
            Severity::Help => DiagnosticSeverity::HINT,
        }),
        code: diagnostic.code.clone().map(NumberOrString::String),
        code_description: diagnostic.code.as_deref().and_then(error_code_description),
        source: Some(DIAGNOSTIC_SOURCE.to_owned()),
        message: diagnostic.message.clone(),
        related_information: (!related_information.is_empty()).then_some(related_information),
        tags: diagnostic.code.as_deref().and_then(diagnostic_tag).map(|tag| vec![tag]),
        data: diagnostic.rendered.as_ref().map(|rendered| json!({ "rendered": rendered })),
    }
}

/// A link to the explanation of a compiler error code such as `E0308`.
fn error_code_description(code: &str) -> Option<CodeDescription> {
    let is_error_code = code.len() == 5
        && code.starts_with('E')
        && code[1..].bytes().all(|byte| byte.is_ascii_digit());
    if !is_error_code {
        return None;
    }
    let href = Uri::from_str(&format!("https://doc.rust-lang.org/error_codes/{code}.html")).ok()?;
    Some(CodeDescription { href })
}

/// Lints about code that can go (shown faded) or that is deprecated (shown struck through).
fn diagnostic_tag(code: &str) -> Option<DiagnosticTag> {
    match code {
        "dead_code" | "unreachable_code" | "unused_imports" | "unused_variables" | "unused_mut"
        | "unused_assignments" | "unused_macros" | "unused_must_use" => {
            Some(DiagnosticTag::UNNECESSARY)
        }
        "deprecated" => Some(DiagnosticTag::DEPRECATED),
        _ => None,
    }
}

/// `window/showDocument` params that open `url` in the user's browser.
pub(crate) fn show_in_browser(url: &str) -> Option<tower_lsp_server::ls_types::ShowDocumentParams> {
    Some(tower_lsp_server::ls_types::ShowDocumentParams {
        uri: Uri::from_str(url).ok()?,
        external: Some(true),
        take_focus: Some(true),
        selection: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotswap_protocol::events::{
        Position as WirePosition, Range as WireRange, RelatedInformation,
    };

    fn wire_range(line: u32, start: u32, end: u32) -> WireRange {
        WireRange {
            start: WirePosition { line, character: start },
            end: WirePosition { line, character: end },
        }
    }

    #[test]
    fn a_compiler_error_keeps_its_utf16_range_code_related_places_and_rendered_text() {
        let diagnostic = events::Diagnostic {
            severity: Severity::Error,
            code: Some("E0308".into()),
            message: "mismatched types".into(),
            file: Some("/app/src/lib.rs".into()),
            range: Some(wire_range(4, 11, 25)),
            rendered: Some("error[E0308]: mismatched types".into()),
            related: vec![RelatedInformation {
                file: "/app/src/lib.rs".into(),
                range: wire_range(3, 0, 2),
                message: "expected `u32` because of return type".into(),
            }],
        };
        let lsp = lsp_diagnostic(&diagnostic, &|path| uri_of_file_path(path));
        assert_eq!(lsp.range.start, Position { line: 4, character: 11 });
        assert_eq!(lsp.range.end, Position { line: 4, character: 25 });
        assert_eq!(lsp.severity, Some(DiagnosticSeverity::ERROR));
        assert_eq!(lsp.source.as_deref(), Some("hotswap"));
        assert_eq!(lsp.code, Some(NumberOrString::String("E0308".into())));
        assert_eq!(
            lsp.code_description.unwrap().href.as_str(),
            "https://doc.rust-lang.org/error_codes/E0308.html"
        );
        let related = lsp.related_information.unwrap();
        assert_eq!(related[0].location.uri.as_str(), "file:///app/src/lib.rs");
        assert_eq!(related[0].message, "expected `u32` because of return type");
        assert_eq!(lsp.data, Some(json!({"rendered": "error[E0308]: mismatched types"})));
    }

    #[test]
    fn lint_codes_get_tags_and_no_error_index_link() {
        let diagnostic = events::Diagnostic {
            severity: Severity::Warning,
            code: Some("unused_variables".into()),
            message: "unused variable: `x`".into(),
            file: Some("/app/src/lib.rs".into()),
            range: None,
            rendered: None,
            related: vec![],
        };
        let lsp = lsp_diagnostic(&diagnostic, &|path| uri_of_file_path(path));
        assert_eq!(lsp.severity, Some(DiagnosticSeverity::WARNING));
        assert_eq!(lsp.tags, Some(vec![DiagnosticTag::UNNECESSARY]));
        assert_eq!(lsp.code_description, None);
        assert_eq!(lsp.range, Range::default(), "no range: the start of the file");
        assert_eq!(lsp.related_information, None);
    }

    #[test]
    fn file_uris_round_trip_and_other_schemes_are_not_files() {
        let uri = uri_of_file_path(Path::new("/home/me/my app/src/lib.rs")).unwrap();
        assert_eq!(uri.as_str(), "file:///home/me/my%20app/src/lib.rs");
        assert_eq!(file_path_of_uri(&uri).unwrap(), Path::new("/home/me/my app/src/lib.rs"));
        let untitled = Uri::from_str("untitled:Untitled-1").unwrap();
        assert_eq!(file_path_of_uri(&untitled), None);
    }
}
