//! The server's settings, read from `initializationOptions` (every client can send those) and
//! from `workspace/didChangeConfiguration` under a `hotswap` key.
//!
//! Each known key is read on its own: a wrong one is reported and the others still apply, so a
//! typo does not silently turn every setting back to its default.

use serde_json::{Map, Value};

/// Where swaps, build failures and handler panics are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MessageDelivery {
    /// `window/showMessage`: the editor shows them (a popup, or neovim's message line).
    ShowMessage,
    /// `window/logMessage`: only in the editor's LSP log.
    LogMessage,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    /// Start `hotswap serve` for the workspace when no daemon runs.
    pub(crate) auto_start: bool,
    /// The `hotswap` command used by `auto_start`.
    pub(crate) hotswap_path: String,
    /// Publish the compiler's diagnostics (rust-analyzer shows similar ones from `cargo check`).
    pub(crate) diagnostics: bool,
    pub(crate) messages: MessageDelivery,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            auto_start: false,
            hotswap_path: "hotswap".to_owned(),
            diagnostics: true,
            messages: MessageDelivery::ShowMessage,
        }
    }
}

/// Every key the server reads, for messages about unknown ones.
const KNOWN_KEYS: &[&str] = &["autoStart", "hotswapPath", "diagnostics", "messages"];

impl Settings {
    /// Applies the settings in `options` (an object; `null` changes nothing) on top of `self`.
    /// Returns one sentence per key that could not be used.
    pub(crate) fn apply(&mut self, options: &Value) -> Vec<String> {
        let object = match options {
            Value::Null => return Vec::new(),
            Value::Object(object) => object,
            other => {
                return vec![format!(
                    "hotswap-lsp settings must be an object, not {other}; using the defaults"
                )];
            }
        };
        let mut problems = Vec::new();
        for (key, value) in object {
            if let Err(problem) = self.apply_key(key, value) {
                problems.push(problem);
            }
        }
        problems
    }

    fn apply_key(&mut self, key: &str, value: &Value) -> Result<(), String> {
        let expected = |what: &str| {
            format!("hotswap-lsp setting {key:?} must be {what}, not {value}; it is ignored")
        };
        match key {
            "autoStart" => {
                self.auto_start = value.as_bool().ok_or_else(|| expected("true or false"))?
            }
            "diagnostics" => {
                self.diagnostics = value.as_bool().ok_or_else(|| expected("true or false"))?;
            }
            "hotswapPath" => match value.as_str() {
                Some(path) if !path.is_empty() => self.hotswap_path = path.to_owned(),
                _ => return Err(expected("the path of the hotswap command")),
            },
            "messages" => {
                self.messages = match value.as_str() {
                    Some("showMessage") => MessageDelivery::ShowMessage,
                    Some("logMessage") => MessageDelivery::LogMessage,
                    _ => return Err(expected("\"showMessage\" or \"logMessage\"")),
                };
            }
            unknown => {
                return Err(format!(
                    "unknown hotswap-lsp setting {unknown:?}; the settings are: {}",
                    KNOWN_KEYS.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// The hotswap part of a `workspace/didChangeConfiguration` payload: the object under
/// `hotswap`. Clients send one payload for all their servers, so anything else is not ours.
pub(crate) fn hotswap_section(settings: &Value) -> Option<&Map<String, Value>> {
    settings.get("hotswap")?.as_object()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_forward_saves_show_messages_and_publish_diagnostics() {
        let settings = Settings::default();
        assert!(!settings.auto_start);
        assert!(settings.diagnostics);
        assert_eq!(settings.messages, MessageDelivery::ShowMessage);
        assert_eq!(settings.hotswap_path, "hotswap");
    }

    #[test]
    fn every_key_applies() {
        let mut settings = Settings::default();
        let problems = settings.apply(&json!({
            "autoStart": true,
            "hotswapPath": "/opt/bin/hotswap",
            "diagnostics": false,
            "messages": "logMessage",
        }));
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(
            settings,
            Settings {
                auto_start: true,
                hotswap_path: "/opt/bin/hotswap".into(),
                diagnostics: false,
                messages: MessageDelivery::LogMessage,
            }
        );
    }

    #[test]
    fn a_wrong_key_is_reported_and_the_others_still_apply() {
        let mut settings = Settings::default();
        let problems = settings
            .apply(&json!({"autostart": true, "diagnostics": "no", "messages": "logMessage"}));
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("unknown hotswap-lsp setting \"autostart\"")
                    && problem.contains("autoStart"))
        );
        assert!(
            problems
                .iter()
                .any(|problem| problem.contains("\"diagnostics\" must be true or false"))
        );
        assert!(settings.diagnostics);
        assert_eq!(settings.messages, MessageDelivery::LogMessage);
    }

    #[test]
    fn null_changes_nothing_and_a_non_object_is_reported() {
        let mut settings = Settings::default();
        assert!(settings.apply(&Value::Null).is_empty());
        assert_eq!(settings.apply(&json!([1])).len(), 1);
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn only_the_hotswap_section_of_a_configuration_change_is_ours() {
        assert_eq!(hotswap_section(&json!({"rust-analyzer": {"x": 1}})), None);
        assert_eq!(
            hotswap_section(&json!({"hotswap": {"diagnostics": false}}))
                .unwrap()
                .get("diagnostics"),
            Some(&json!(false))
        );
    }
}
