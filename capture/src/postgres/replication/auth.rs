//! Startup and authentication: StartupMessage with `replication=database`, then trust,
//! cleartext password, MD5 or SCRAM-SHA-256 (without channel binding), then the parameter
//! statuses up to the first ReadyForQuery.

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;

use super::error::ReplicationError;
use super::wire::{Reader, Wire, log_notice, parse_error_fields, parse_parameter_status};
use super::{AuthMethod, ReplicationConfig};

/// What the server told us while the session started.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) auth_method: AuthMethod,
    pub(crate) parameters: Vec<(String, String)>,
    pub(crate) backend_pid: Option<i32>,
}

/// Sends the startup message, authenticates and waits for the first ReadyForQuery.
pub(crate) async fn start_session(
    wire: &mut Wire,
    cfg: &ReplicationConfig,
) -> Result<Session, ReplicationError> {
    let params = [
        ("user", cfg.user.as_str()),
        ("database", cfg.database.as_str()),
        ("replication", "database"),
        ("application_name", cfg.application_name.as_str()),
        ("client_encoding", "UTF8"),
        // Unambiguous text forms for the values pgoutput sends (see `types`).
        ("DateStyle", "ISO"),
        ("TimeZone", "UTC"),
        ("IntervalStyle", "iso_8601"),
        ("extra_float_digits", "3"),
        ("bytea_output", "hex"),
        ("lc_monetary", "C"),
    ];
    frontend::startup_message(params, wire.write_buf())
        .map_err(|_| nul_in("user, database or application_name"))?;
    wire.flush().await?;
    let auth_method = authenticate(wire, cfg).await?;
    let mut session = Session {
        auth_method,
        parameters: Vec::new(),
        backend_pid: None,
    };
    loop {
        match wire.next_frame().await? {
            b'S' => {
                let (name, value) = parse_parameter_status(wire.body())?;
                session.parameters.push((name.to_owned(), value.to_owned()));
            }
            b'K' => session.backend_pid = Some(Reader::new(wire.body(), "backend key data").i32()?),
            b'Z' => return Ok(session),
            b'E' => return Err(parse_error_fields(wire.body())?.into()),
            b'N' => log_notice(wire.body()),
            tag => return Err(unexpected(tag, "after authentication")),
        }
    }
}

/// Answers authentication requests until AuthenticationOk.
async fn authenticate(
    wire: &mut Wire,
    cfg: &ReplicationConfig,
) -> Result<AuthMethod, ReplicationError> {
    let mut method = AuthMethod::Trust;
    let mut scram: Option<ScramSha256> = None;
    loop {
        match wire.next_frame().await? {
            b'R' => {}
            b'E' => return Err(rejected(cfg, parse_error_fields(wire.body())?)),
            b'N' => {
                log_notice(wire.body());
                continue;
            }
            // NegotiateProtocolVersion: we ask for 3.0 without extensions, so it is harmless.
            b'v' => continue,
            tag => return Err(unexpected(tag, "during authentication")),
        }
        // Auth messages are few and small: copy the body so we may write while using it.
        let body = wire.body().to_vec();
        let mut r = Reader::new(&body, "authentication request");
        match r.i32()? {
            0 => return Ok(method),
            3 => {
                method = AuthMethod::Cleartext;
                let password = password(cfg, "a cleartext password")?;
                if password.contains('\0') {
                    return Err(nul_in("password"));
                }
                wire.send_secret(password.len() + 16, |buf| {
                    frontend::password_message(password.as_bytes(), buf)
                })
                .await?;
            }
            5 => {
                method = AuthMethod::Md5;
                let password = password(cfg, "an md5 password")?;
                let mut hash = md5_hash(cfg.user.as_bytes(), password.as_bytes(), r.salt()?);
                let sent = wire
                    .send_secret(hash.len() + 16, |buf| {
                        frontend::password_message(hash.as_bytes(), buf)
                    })
                    .await;
                zeroize::Zeroize::zeroize(&mut hash);
                sent?;
            }
            10 => {
                method = AuthMethod::ScramSha256;
                let mechanisms = sasl_mechanisms(&mut r)?;
                if !mechanisms.contains(&sasl::SCRAM_SHA_256) {
                    return Err(ReplicationError::Auth(format!(
                        "postgresql offers only the sasl mechanisms {mechanisms:?} for user {:?}, \
                         which need tls channel binding; allow SCRAM-SHA-256 without tls in pg_hba.conf",
                        cfg.user
                    )));
                }
                let password = password(cfg, "a scram-sha-256 password")?;
                let client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(
                    sasl::SCRAM_SHA_256,
                    client.message(),
                    wire.write_buf(),
                )
                .map_err(|e| ReplicationError::Protocol(format!("sasl initial response: {e}")))?;
                scram = Some(client);
            }
            11 => {
                let client = scram.as_mut().ok_or_else(|| out_of_order("SASLContinue"))?;
                client.update(r.rest()).map_err(|e| {
                    ReplicationError::Auth(format!("invalid scram challenge from postgresql: {e}"))
                })?;
                frontend::sasl_response(client.message(), wire.write_buf())
                    .map_err(|e| ReplicationError::Protocol(format!("sasl response: {e}")))?;
            }
            12 => {
                let client = scram.as_mut().ok_or_else(|| out_of_order("SASLFinal"))?;
                client.finish(r.rest()).map_err(|e| {
                    ReplicationError::Auth(format!(
                        "the server's scram signature did not verify ({e}); the server may not be \
                         the one configured"
                    ))
                })?;
                continue;
            }
            code => {
                return Err(ReplicationError::Auth(format!(
                    "postgresql asks for an authentication method ordo does not support ({}) for \
                     user {:?}; use scram-sha-256, md5, password or trust in pg_hba.conf",
                    method_name(code),
                    cfg.user
                )));
            }
        }
        wire.flush().await?;
    }
}

fn sasl_mechanisms<'a>(r: &mut Reader<'a>) -> Result<Vec<&'a str>, ReplicationError> {
    let mut mechanisms = Vec::new();
    loop {
        match r.cstr()? {
            "" => return Ok(mechanisms),
            m => mechanisms.push(m),
        }
    }
}

fn password<'a>(cfg: &'a ReplicationConfig, what: &str) -> Result<&'a str, ReplicationError> {
    cfg.password.as_deref().ok_or_else(|| {
        ReplicationError::Auth(format!(
            "postgresql asks for {what} for user {:?} but none is configured; set the password",
            cfg.user
        ))
    })
}

/// An ErrorResponse before AuthenticationOk: invalid authorization (`28xxx`) is an auth error,
/// anything else (too many connections, shutting down) stays a server error.
fn rejected(cfg: &ReplicationConfig, e: super::error::ServerError) -> ReplicationError {
    if e.code.starts_with("28") {
        ReplicationError::Auth(format!(
            "postgresql rejected user {:?} ({}: {}); check the user name and password, and that \
             pg_hba.conf allows this user to connect to database {:?}",
            cfg.user, e.code, e.message, cfg.database
        ))
    } else {
        e.into()
    }
}

fn method_name(code: i32) -> String {
    match code {
        2 => "kerberos v5".to_owned(),
        6 => "scm credentials".to_owned(),
        7 => "gssapi".to_owned(),
        9 => "sspi".to_owned(),
        _ => format!("authentication request {code}"),
    }
}

fn out_of_order(what: &str) -> ReplicationError {
    ReplicationError::Protocol(format!("{what} without a preceding sasl exchange"))
}

fn nul_in(what: &str) -> ReplicationError {
    ReplicationError::Config(format!("the {what} contains a NUL byte; remove it"))
}

pub(crate) fn unexpected(tag: u8, when: &str) -> ReplicationError {
    ReplicationError::Protocol(format!(
        "unexpected message of type {:?} {when}",
        char::from(tag)
    ))
}
