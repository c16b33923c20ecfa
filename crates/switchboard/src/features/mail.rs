//! Outgoing e-mail over SMTP (`smtp.*`), shared by the features that send mail
//! (voicemail notifications now; PIN delivery and others later).
//!
//! A [`Mailer`] exists only when `smtp.host` is set. Sending never holds up the caller:
//! [`Mailer::send_later`] hands the message to a task that tries a few times with a
//! growing pause (a server that is down or answers 4xx may come back; a 5xx answer is
//! final) and logs what became of it. The SMTP password is a [`Secret`]: it goes to the
//! transport and nowhere else, never into a log line.
//!
//! [`Secret`]: crate::config::Secret

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::{self, AsyncSmtpTransport};
use lettre::{AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpSecurity};

/// The pauses before the second, third, … attempt of a delivery.
pub const RETRY_DELAYS: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(300),
];

/// How long one SMTP exchange (connect, greeting, each command) may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the `smtp` section cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MailConfigError {
    #[error("smtp.from `{value}` is not an e-mail address: {reason}")]
    From { value: String, reason: String },
    #[error("smtp.host `{host}` cannot be used: {reason}")]
    Host { host: String, reason: String },
}

/// Sends e-mail through the configured SMTP server. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

struct Inner {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    retry_delays: Vec<Duration>,
}

/// `smtp.from` as a mailbox (`Name <address>` or a bare address).
pub fn parse_from(value: &str) -> Result<Mailbox, MailConfigError> {
    value.parse::<Mailbox>().map_err(|e| MailConfigError::From {
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

impl Mailer {
    /// The mailer of `config`, or `None` when `smtp.host` is not set (no e-mail is
    /// sent then).
    pub fn from_config(config: &SmtpConfig) -> Result<Option<Self>, MailConfigError> {
        let Some(host) = config
            .host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
        else {
            return Ok(None);
        };
        let from = parse_from(&config.from)?;
        let bad_host = |e: smtp::Error| MailConfigError::Host {
            host: host.to_owned(),
            reason: e.to_string(),
        };
        let builder = match config.security {
            SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            SmtpSecurity::Starttls => {
                AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(bad_host)?
            }
            SmtpSecurity::Tls => {
                AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(bad_host)?
            }
        };
        let mut builder = builder.port(config.port).timeout(Some(SMTP_TIMEOUT));
        if let Some(user) = config.username.as_deref().filter(|u| !u.is_empty()) {
            let password = config
                .password
                .as_ref()
                .map(|p| p.expose().to_owned())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(user.to_owned(), password));
        }
        Ok(Some(Self {
            inner: Arc::new(Inner {
                transport: builder.build(),
                from,
                retry_delays: RETRY_DELAYS.to_vec(),
            }),
        }))
    }

    /// The same mailer with other pauses between attempts (tests).
    pub fn with_retry_delays(self, delays: Vec<Duration>) -> Self {
        Self {
            inner: Arc::new(Inner {
                transport: self.inner.transport.clone(),
                from: self.inner.from.clone(),
                retry_delays: delays,
            }),
        }
    }

    /// The sender of every message (`smtp.from`).
    pub fn from(&self) -> &Mailbox {
        &self.inner.from
    }

    /// Sends `message` now, retrying transient failures after each of the retry
    /// delays; returns the last error when every attempt failed or the server refused
    /// for good. `what` names the message in the log (e.g. `voicemail <id>`).
    pub async fn send(&self, message: &Message, what: &str) -> Result<(), smtp::Error> {
        let mut delays = self.inner.retry_delays.iter();
        let mut attempt = 1;
        loop {
            match self.inner.transport.send(message.clone()).await {
                Ok(_) => {
                    tracing::info!(what, attempt, "e-mail sent");
                    return Ok(());
                }
                Err(e) => {
                    let next = if e.is_permanent() {
                        None
                    } else {
                        delays.next()
                    };
                    let Some(delay) = next else {
                        return Err(e);
                    };
                    tracing::warn!(
                        what,
                        attempt,
                        error = %e,
                        retry_in_secs = delay.as_secs_f64(),
                        "e-mail not sent; retrying"
                    );
                    tokio::time::sleep(*delay).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Sends `message` from a task of its own (see [`Self::send`]) and logs a final
    /// failure: the caller neither waits nor fails.
    pub fn send_later(&self, message: Message, what: String) {
        let mailer = self.clone();
        tokio::spawn(async move {
            if let Err(e) = mailer.send(&message, &what).await {
                tracing::error!(what, error = %e, "e-mail not sent; giving up");
            }
        });
    }
}
