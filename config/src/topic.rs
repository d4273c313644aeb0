//! Kafka topic names and the topic templates of outputs (`{schema}.{table}`).

/// The placeholders a topic template may use.
pub(crate) const PLACEHOLDERS: [&str; 3] = ["db", "schema", "table"];

/// Longest topic name Kafka accepts.
const MAX_TOPIC_LEN: usize = 249;

/// Why `name` is not a valid Kafka topic name, or `None` when it is.
pub(crate) fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some(String::from("topic name is empty"));
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` is not allowed as a topic name"));
    }
    if name.len() > MAX_TOPIC_LEN {
        return Some(format!(
            "topic name is {} characters long, kafka allows at most {MAX_TOPIC_LEN}",
            name.len()
        ));
    }
    let bad = name.chars().find(|ch| !is_topic_char(*ch))?;
    Some(format!("topic name `{name}` contains `{bad}`"))
}

/// The hint that goes with [`topic_name_problem`].
pub(crate) const TOPIC_NAME_HINT: &str =
    "use 1 to 249 of the characters a-z, A-Z, 0-9, `.`, `_` and `-`";

fn is_topic_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')
}

/// A piece of a topic template.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Text copied as is.
    Literal(&'a str),
    /// `{name}`.
    Placeholder(&'a str),
    /// A `{` with no closing `}`, and the text after it.
    Unclosed(&'a str),
    /// A `}` with no opening `{`.
    StrayClose,
}

/// Splits a topic template into literal text and placeholders.
pub(crate) fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(at) = rest.find(['{', '}']) {
        out.push(Piece::Literal(&rest[..at]));
        let after = &rest[at + 1..];
        if rest[at..].starts_with('}') {
            out.push(Piece::StrayClose);
            rest = after;
            continue;
        }
        let Some(end) = after.find('}') else {
            out.push(Piece::Unclosed(after));
            return out;
        };
        out.push(Piece::Placeholder(&after[..end]));
        rest = &after[end + 1..];
    }
    out.push(Piece::Literal(rest));
    out
}

/// Fills in a template. Values are made topic-safe: characters Kafka does not allow in topic
/// names become `_`. Malformed parts of the template are copied as written.
pub(crate) fn render(template: &str, db: &str, schema: &str, table: &str) -> String {
    let mut topic = String::with_capacity(template.len() + table.len());
    for piece in pieces(template) {
        match piece {
            Piece::Literal(text) => topic.push_str(text),
            Piece::Placeholder("db") => push_sanitized(&mut topic, db),
            Piece::Placeholder("schema") => push_sanitized(&mut topic, schema),
            Piece::Placeholder("table") => push_sanitized(&mut topic, table),
            Piece::Placeholder(other) => topic.push_str(&format!("{{{other}}}")),
            Piece::Unclosed(text) => topic.push_str(&format!("{{{text}")),
            Piece::StrayClose => topic.push('}'),
        }
    }
    topic
}

fn push_sanitized(topic: &mut String, value: &str) {
    topic.extend(
        value
            .chars()
            .map(|ch| if is_topic_char(ch) { ch } else { '_' }),
    );
}

/// Problems with a topic template, each as (message, hint); empty when it is valid.
pub(crate) fn template_problems(template: &str) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    for piece in pieces(template) {
        match piece {
            Piece::Placeholder(name) if !PLACEHOLDERS.contains(&name) => problems.push((
                format!("unknown placeholder `{{{name}}}` in topic `{template}`"),
                placeholder_hint(name),
            )),
            Piece::Unclosed(_) => problems.push((
                format!("`{{` is not closed in topic `{template}`"),
                format!("the placeholders are {ALL_PLACEHOLDERS}"),
            )),
            Piece::StrayClose => problems.push((
                format!("`}}` without `{{` in topic `{template}`"),
                format!("the placeholders are {ALL_PLACEHOLDERS}"),
            )),
            _ => {}
        }
    }
    if problems.is_empty()
        && let Some(problem) = topic_name_problem(&render(template, "db", "schema", "table"))
    {
        let bad = template
            .chars()
            .find(|ch| !is_topic_char(*ch) && !"{}".contains(*ch));
        let message = match bad {
            Some(bad) => format!("topic `{template}` contains `{bad}`"),
            None => problem,
        };
        problems.push((message, TOPIC_NAME_HINT.to_owned()));
    }
    problems
}

fn placeholder_hint(name: &str) -> String {
    match crate::spelling::closest(name, &PLACEHOLDERS) {
        Some(best) => format!("did you mean `{{{best}}}`? the placeholders are {ALL_PLACEHOLDERS}"),
        None => format!("the placeholders are {ALL_PLACEHOLDERS}"),
    }
}

const ALL_PLACEHOLDERS: &str = "`{db}`, `{schema}` and `{table}`";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_topic_names() {
        assert_eq!(topic_name_problem("ordo.commits"), None);
        assert_eq!(topic_name_problem("a_b-C.9"), None);
        assert!(topic_name_problem("").is_some());
        assert!(topic_name_problem("..").is_some());
        assert_eq!(
            topic_name_problem("ordo commits").as_deref(),
            Some("topic name `ordo commits` contains ` `")
        );
        assert!(topic_name_problem(&"a".repeat(250)).is_some());
    }

    #[test]
    fn renders_templates_with_safe_values() {
        assert_eq!(
            render("{schema}.{table}", "d", "public", "orders"),
            "public.orders"
        );
        assert_eq!(
            render("cdc.{db}.{table}", "shop", "", "my table"),
            "cdc.shop.my_table"
        );
        assert_eq!(render("plain", "d", "s", "t"), "plain");
    }

    #[test]
    fn reports_template_problems() {
        let unknown = template_problems("{schema}.{tabel}");
        assert_eq!(
            unknown[0].0,
            "unknown placeholder `{tabel}` in topic `{schema}.{tabel}`"
        );
        assert_eq!(
            unknown[0].1,
            "did you mean `{table}`? the placeholders are `{db}`, `{schema}` and `{table}`"
        );
        assert_eq!(
            template_problems("{table"),
            [(
                String::from("`{` is not closed in topic `{table`"),
                format!("the placeholders are {ALL_PLACEHOLDERS}")
            )]
        );
        assert_eq!(
            template_problems("cdc/{table}")[0].0,
            "topic `cdc/{table}` contains `/`"
        );
        assert!(template_problems("{db}.{schema}.{table}").is_empty());
    }
}
