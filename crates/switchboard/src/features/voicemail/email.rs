//! The e-mail that tells a mailbox owner about a new message, the recording attached
//! (`voicemail.email_notifications`, sent through [`Mailer`](crate::features::mail::Mailer)).

use chrono_tz::Tz;
use lettre::Message;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};

use super::VoicemailMessage;

/// `m:ss` (`h:mm:ss` from an hour on) of `ms` milliseconds.
pub(super) fn duration_text(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Text of a header or a line: no control characters (a display name cannot add a
/// header or a line of its own).
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// `Name (number)`, or the number alone when there is no name.
fn caller_text(message: &VoicemailMessage) -> String {
    let name = clean(&message.caller_name);
    let number = clean(&message.caller);
    if name.is_empty() || name == number {
        number
    } else {
        format!("{name} ({number})")
    }
}

/// The notice of `message` from `from` to `to`, times in `timezone`, `wav` (the
/// message's file) attached as `audio/wav`.
pub(super) fn build(
    from: &Mailbox,
    to: Mailbox,
    mailbox_name: &str,
    message: &VoicemailMessage,
    timezone: Tz,
    wav: Vec<u8>,
) -> Result<Message, lettre::error::Error> {
    let caller = caller_text(message);
    let duration = duration_text(message.duration_ms);
    let received = message.received_at.to_datetime().with_timezone(&timezone);
    let owner = clean(mailbox_name);
    let owner = if owner.is_empty() {
        message.extension.clone()
    } else {
        format!("{} ({owner})", message.extension)
    };
    let body = format!(
        "You have a new voicemail message on extension {owner}.\r\n\
         \r\n\
         From:     {caller}\r\n\
         Received: {}\r\n\
         Length:   {duration}\r\n\
         \r\n\
         The recording is attached. You can also listen to it by phone (*97) or in the web panel.\r\n",
        received.format("%Y-%m-%d %H:%M:%S %Z"),
    );
    let filename = format!("voicemail-{}.wav", received.format("%Y%m%d-%H%M%S"));
    let audio = ContentType::parse("audio/wav").expect("a valid MIME type");
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(format!("New voicemail from {caller} — {duration}"))
        .date(received.into())
        .multipart(
            MultiPart::mixed()
                .singlepart(SinglePart::plain(body))
                .singlepart(Attachment::new(filename).body(wav, audio)),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(duration_text(0), "0:00");
        assert_eq!(duration_text(7_900), "0:07");
        assert_eq!(duration_text(65_000), "1:05");
        assert_eq!(duration_text(3_725_000), "1:02:05");
    }
}
