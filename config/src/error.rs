//! Problems found in a configuration file, each with where it is and how to fix it.

use std::fmt;

/// One problem in a configuration file.
///
/// Displays as `origin:line:column: path: message`, followed by an indented `hint:` line when
/// there is a hint; parts that are unknown are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file the problem is in, as given to [`crate::parse`] or [`crate::load`].
    pub origin: String,
    /// Config path of the offending value, e.g. `mappings[2].outputs[0].columns[1]`; empty for
    /// problems with the file as a whole.
    pub path: String,
    /// 1-based line of the offending node, when known.
    pub line: Option<usize>,
    /// 1-based column of the offending node, when known.
    pub column: Option<usize>,
    /// What is wrong, in lowercase.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.origin)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        f.write_str(": ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found in a configuration file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The problems; never empty when returned by this crate.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Wraps a single problem.
    pub fn single(error: ConfigError) -> Self {
        Self {
            errors: vec![error],
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: Option<usize>, path: &str, hint: Option<&str>) -> ConfigError {
        ConfigError {
            origin: String::from("ordo.yaml"),
            path: path.to_owned(),
            line,
            column: line.map(|_| 9),
            message: String::from("unknown format `jsn`"),
            hint: hint.map(str::to_owned),
        }
    }

    #[test]
    fn displays_position_path_message_and_hint() {
        let shown = error(
            Some(14),
            "mappings[0].outputs[1].format",
            Some("use one of: json"),
        );
        assert_eq!(
            shown.to_string(),
            "ordo.yaml:14:9: mappings[0].outputs[1].format: unknown format `jsn`\n  \
             hint: use one of: json"
        );
    }

    #[test]
    fn leaves_out_unknown_parts() {
        assert_eq!(
            error(None, "", None).to_string(),
            "ordo.yaml: unknown format `jsn`"
        );
    }

    #[test]
    fn lists_every_error() {
        let all = ConfigErrors {
            errors: vec![error(Some(1), "a", None), error(Some(2), "b", None)],
        };
        assert_eq!(all.to_string().lines().count(), 2);
    }
}
