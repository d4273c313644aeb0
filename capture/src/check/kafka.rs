//! Why the Kafka cluster cannot be reached: librdkafka reports TLS and SASL failures only
//! through its error callback, so `ordo check` opens a short-lived client that records them.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;

/// Records the reasons librdkafka gives in its error callback.
#[derive(Debug, Default)]
struct Reasons(Mutex<Vec<String>>);

impl ClientContext for Reasons {
    fn log(&self, _level: RDKafkaLogLevel, _fac: &str, _log_message: &str) {}

    fn error(&self, _error: KafkaError, reason: &str) {
        if let Ok(mut reasons) = self.0.lock()
            && !reasons.iter().any(|r| r == reason)
        {
            reasons.push(reason.to_owned());
        }
    }
}

impl ConsumerContext for Reasons {}

/// What librdkafka said while failing to reach the cluster, and the fix it suggests
/// (`ssl.ca.location`, the SASL credentials...); `None` when it said nothing useful.
pub(super) fn diagnose(kafka: &ordo_config::Kafka, timeout: Duration) -> Option<(String, String)> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &kafka.bootstrap_servers);
    for (k, v) in kafka.properties.iter() {
        if k.starts_with("security.") || k.starts_with("sasl.") || k.starts_with("ssl.") {
            cfg.set(k, v);
        }
    }
    let consumer: BaseConsumer<Reasons> = cfg.create_with_context(Reasons::default()).ok()?;
    let _ = consumer.fetch_metadata(None, timeout);
    // The error events reach the callback when the client is polled.
    for _ in 0..5 {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let reasons = consumer
        .context()
        .0
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    let reason = reasons
        .iter()
        .find(|r| is_tls(r) || is_sasl(r))
        .or_else(|| reasons.first())?
        .clone();
    Some((reason.clone(), fix(&reason)))
}

fn is_tls(reason: &str) -> bool {
    reason.contains("SSL") || reason.contains("certificate")
}

fn is_sasl(reason: &str) -> bool {
    reason.contains("SASL") || reason.contains("uthentication")
}

fn fix(reason: &str) -> String {
    if reason.contains("certificate verify failed") || reason.contains("could not be verified") {
        "set kafka.properties ssl.ca.location to the PEM certificate of the authority that \
         signed the broker's certificate"
            .to_owned()
    } else if is_tls(reason) {
        "check the tls settings in kafka.properties (security.protocol: ssl or sasl_ssl, \
         ssl.ca.location, ssl.certificate.location, ssl.key.location) against the broker's listener"
            .to_owned()
    } else if is_sasl(reason) {
        "check kafka.properties sasl.mechanism, sasl.username and sasl.password against the \
         broker's users"
            .to_owned()
    } else {
        "check kafka.bootstrap_servers and the security settings in kafka.properties".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::fix;

    #[test]
    fn fixes_name_the_property() {
        assert!(fix("SSL handshake failed: certificate verify failed").contains("ssl.ca.location"));
        assert!(
            fix("SASL authentication error: Authentication failed due to invalid credentials")
                .contains("sasl.password")
        );
        assert!(fix("Connection refused").contains("bootstrap_servers"));
    }
}
