//! Which files have diagnostics in the editor, so that a new build's complete set can replace
//! them: every file of the new set is published, and every file that had diagnostics before but
//! has none now is published empty (LSP diagnostics are replaced per file, never merged).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use hotswap_protocol::events::Diagnostic;

/// A build's diagnostics by file. Diagnostics without a file cannot be shown in one.
pub(crate) fn diagnostics_by_file(
    diagnostics: &[Diagnostic],
) -> BTreeMap<PathBuf, Vec<&Diagnostic>> {
    let mut by_file: BTreeMap<PathBuf, Vec<&Diagnostic>> = BTreeMap::new();
    for diagnostic in diagnostics {
        if let Some(file) = &diagnostic.file {
            by_file.entry(file.clone()).or_default().push(diagnostic);
        }
    }
    by_file
}

/// The files whose diagnostics the editor shows now.
#[derive(Debug, Default)]
pub(crate) struct PublishedDiagnostics {
    files: BTreeSet<PathBuf>,
}

impl PublishedDiagnostics {
    /// Records that exactly `files` have diagnostics now; returns the files to clear.
    pub(crate) fn replace(&mut self, files: BTreeSet<PathBuf>) -> Vec<PathBuf> {
        let cleared = self.files.difference(&files).cloned().collect();
        self.files = files;
        cleared
    }

    /// Forgets every file; returns them, to be cleared.
    pub(crate) fn clear_all(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.files).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotswap_protocol::events::Severity;

    fn diagnostic(file: Option<&str>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code: None,
            message: "m".into(),
            file: file.map(PathBuf::from),
            range: None,
            rendered: None,
            related: vec![],
        }
    }

    #[test]
    fn files_that_lost_their_diagnostics_are_cleared_and_others_are_not() {
        let mut published = PublishedDiagnostics::default();
        let first = [
            diagnostic(Some("/a.rs")),
            diagnostic(Some("/b.rs")),
            diagnostic(Some("/a.rs")),
            diagnostic(None),
        ];
        let by_file = diagnostics_by_file(&first);
        assert_eq!(by_file.len(), 2);
        assert_eq!(by_file[&PathBuf::from("/a.rs")].len(), 2);
        assert!(published.replace(by_file.keys().cloned().collect()).is_empty());

        let second = [diagnostic(Some("/b.rs")), diagnostic(Some("/c.rs"))];
        let cleared = published.replace(diagnostics_by_file(&second).keys().cloned().collect());
        assert_eq!(cleared, vec![PathBuf::from("/a.rs")]);

        assert_eq!(
            published.replace(BTreeSet::new()),
            vec![PathBuf::from("/b.rs"), PathBuf::from("/c.rs")]
        );
        assert!(published.clear_all().is_empty());
    }
}
