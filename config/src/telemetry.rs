//! How the daemon reports on itself: Prometheus metrics and logs.

use std::net::SocketAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::positions::join_key;
use crate::validate::Validation;

/// The Prometheus metrics endpoint.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// Address to serve `/metrics` on, e.g. `127.0.0.1:9187`; no endpoint when not set.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
}

/// Log output.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Logging {
    /// Level, or `tracing` filter directives such as `info,ordo_capture=debug`.
    /// Default `info`.
    #[serde(default = "default_level")]
    pub level: String,
    /// Line format. Default `auto`: text on a terminal, JSON otherwise.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for Logging {
    fn default() -> Self {
        Self {
            level: default_level(),
            format: LogFormat::default(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    #[default]
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn default_level() -> String {
    String::from("info")
}

const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

fn is_level(word: &str) -> bool {
    LEVELS.contains(&word.to_ascii_lowercase().as_str())
}

impl Logging {
    pub(crate) fn validate(&self, cx: &mut Validation<'_>, path: &str) {
        let at = join_key(path, "level");
        if self.level.trim().is_empty() {
            cx.error(
                &at,
                "must not be empty",
                "use one of: trace, debug, info, warn, error, off",
            );
            return;
        }
        for directive in self.level.split(',').map(str::trim) {
            let valid = match directive.rsplit_once('=') {
                Some((target, level)) => !target.is_empty() && is_level(level),
                // A bare word is a level, or a target such as `ordo_capture`.
                None => is_level(directive) || directive.contains(['_', ':']),
            };
            if !valid {
                cx.error(
                    &at,
                    format!("`{directive}` is not a log level or filter directive"),
                    "use a level (trace, debug, info, warn, error, off) or `target=level`",
                );
            }
        }
    }
}
