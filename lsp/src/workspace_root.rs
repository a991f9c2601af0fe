//! Which hotswap workspace the editor works in: the directory that holds `hotswap.toml`, the same
//! directory the daemon serves and derives its socket from.
//!
//! The editor's workspace folders come first (then its `rootUri`): the first one that is inside a
//! hotswap workspace (at or below a `hotswap.toml`) decides. Without such a folder, the nearest
//! `hotswap.toml` above a file the editor opens or saves decides.

use std::path::{Path, PathBuf};

/// The file that marks a hotswap workspace.
pub(crate) const WORKSPACE_MARKER: &str = "hotswap.toml";

/// The nearest directory at or above `start` (a file or a directory) that holds `hotswap.toml`.
pub(crate) fn nearest_workspace_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|directory| directory.join(WORKSPACE_MARKER).is_file())
        .map(Path::to_path_buf)
}

/// The workspace of the first editor folder that lies in one.
pub(crate) fn workspace_root_of_folders(folders: &[PathBuf]) -> Option<PathBuf> {
    folders.iter().find_map(|folder| nearest_workspace_root(folder))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_marker_wins_and_folders_are_tried_in_order() {
        let temp = tempfile::tempdir().unwrap();
        let outer = temp.path().join("outer");
        let app = outer.join("apps/shop");
        std::fs::create_dir_all(app.join("src")).unwrap();
        std::fs::write(outer.join(WORKSPACE_MARKER), "").unwrap();
        std::fs::write(app.join(WORKSPACE_MARKER), "").unwrap();
        let elsewhere = temp.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();

        assert_eq!(nearest_workspace_root(&app.join("src/lib.rs")), Some(app.clone()));
        assert_eq!(nearest_workspace_root(&app.join("src")), Some(app.clone()));
        assert_eq!(nearest_workspace_root(&outer.join("apps")), Some(outer.clone()));
        assert_eq!(nearest_workspace_root(&elsewhere), None);
        assert_eq!(workspace_root_of_folders(&[elsewhere.clone(), app.clone()]), Some(app));
        assert_eq!(workspace_root_of_folders(&[elsewhere]), None);
        assert_eq!(workspace_root_of_folders(&[]), None);
    }
}
