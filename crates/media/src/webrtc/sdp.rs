//! Narrowing a browser's offer to what the gateway takes before str0m sees it: the first
//! audio m-line, which must offer G.711.
//!
//! str0m answers every m-line it can (a data channel, a second audio track), and the
//! gateway bridges exactly one audio stream. Rejecting an m-line is the answerer's
//! business (RFC 3264 §6: port 0), so the other m-lines are rewritten to port 0 and
//! dropped from the BUNDLE group; str0m then answers them as rejected.

use super::WebRtcError;

/// One `m=` section of an SDP, as lines.
struct Section {
    lines: Vec<String>,
    kind: String,
    port: Option<u32>,
    mid: Option<String>,
    bundle_only: bool,
}

impl Section {
    fn new(lines: Vec<String>) -> Self {
        // "m=<media> <port>[/<count>] <proto> <fmt> ..."
        let mut words = lines[0].trim_start_matches("m=").split_whitespace();
        let kind = words.next().unwrap_or_default().to_ascii_lowercase();
        let port = words
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok());
        let mid = lines
            .iter()
            .find_map(|l| l.strip_prefix("a=mid:"))
            .map(|m| m.trim().to_owned());
        let bundle_only = lines.iter().any(|l| l.trim() == "a=bundle-only");
        Self {
            lines,
            kind,
            port,
            mid,
            bundle_only,
        }
    }

    /// Port 0 without `a=bundle-only` is a disabled m-line.
    fn usable(&self) -> bool {
        self.port.is_some_and(|p| p != 0) || self.bundle_only
    }

    /// The payload types of the m-line.
    fn formats(&self) -> impl Iterator<Item = &str> {
        self.lines[0].split_whitespace().skip(3)
    }

    /// The encoding name and clock rate of payload type `pt` (RFC 3551's static
    /// numbers stand without an `a=rtpmap`).
    fn encoding(&self, pt: &str) -> Option<(String, String)> {
        let prefix = format!("a=rtpmap:{pt} ");
        let mapped = self.lines.iter().find_map(|l| l.strip_prefix(&prefix));
        match (mapped, pt) {
            (Some(map), _) => {
                let mut parts = map.trim().split('/');
                let name = parts.next().unwrap_or_default().to_ascii_uppercase();
                Some((name, parts.next().unwrap_or_default().to_owned()))
            }
            (None, "0") => Some(("PCMU".into(), "8000".into())),
            (None, "8") => Some(("PCMA".into(), "8000".into())),
            (None, _) => None,
        }
    }

    fn offers_g711(&self) -> bool {
        self.formats().any(|pt| {
            self.encoding(pt)
                .is_some_and(|(name, rate)| (name == "PCMU" || name == "PCMA") && rate == "8000")
        })
    }

    fn reject(&mut self) {
        let mut words: Vec<&str> = self.lines[0].split(' ').collect();
        if words.len() > 1 {
            words[1] = "0";
        }
        self.lines[0] = words.join(" ");
        self.lines.retain(|l| l.trim() != "a=bundle-only");
    }
}

/// An offer narrowed to one audio m-line.
pub(super) struct Narrowed {
    /// The offer for str0m.
    pub sdp: String,
    /// The `a=mid` of the audio m-line (str0m only announces media once connected).
    pub mid: String,
    /// The mids of the m-lines rejected.
    pub rejected: Vec<String>,
}

/// Splits an SDP into its session lines and its m-sections.
fn split(sdp: &str) -> Result<(Vec<String>, Vec<Section>), WebRtcError> {
    let mut session: Vec<String> = Vec::new();
    let mut sections: Vec<Vec<String>> = Vec::new();
    for line in sdp.lines().map(str::trim_end).filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            sections.push(vec![line.to_owned()]);
        } else if let Some(section) = sections.last_mut() {
            section.push(line.to_owned());
        } else {
            session.push(line.to_owned());
        }
    }
    if !session.first().is_some_and(|l| l.starts_with("v=")) {
        return Err(WebRtcError::Sdp("not an SDP (no v= line)".into()));
    }
    Ok((session, sections.into_iter().map(Section::new).collect()))
}

/// Drops `rejected` mids from the session's BUNDLE group and joins the SDP up again.
fn join(mut session: Vec<String>, sections: &[Section], rejected: &[String]) -> String {
    for line in &mut session {
        if let Some(group) = line.strip_prefix("a=group:BUNDLE") {
            let kept: Vec<&str> = group
                .split_whitespace()
                .filter(|mid| !rejected.iter().any(|r| r == mid))
                .collect();
            *line = format!("a=group:BUNDLE {}", kept.join(" "));
        }
    }
    let mut sdp = String::new();
    for line in session
        .iter()
        .chain(sections.iter().flat_map(|s| s.lines.iter()))
    {
        sdp.push_str(line);
        sdp.push_str("\r\n");
    }
    sdp
}

/// The offer with every m-line but the first usable audio one rejected.
pub(super) fn narrow_offer(offer: &str) -> Result<Narrowed, WebRtcError> {
    let (session, mut sections) = split(offer)?;
    let Some(chosen) = sections
        .iter()
        .position(|s| s.kind == "audio" && s.usable())
    else {
        return Err(WebRtcError::NoAudio);
    };
    if !sections[chosen].offers_g711() {
        let offered: Vec<String> = sections[chosen]
            .formats()
            .filter_map(|pt| sections[chosen].encoding(pt))
            .map(|(name, rate)| format!("{name}/{rate}"))
            .collect();
        return Err(WebRtcError::NoCommonCodec(offered.join(" ")));
    }

    let Some(mid) = sections[chosen].mid.clone() else {
        return Err(WebRtcError::Sdp("the audio m-line has no a=mid".into()));
    };

    let mut rejected = Vec::new();
    for (i, section) in sections.iter_mut().enumerate() {
        if i != chosen && section.usable() {
            section.reject();
            rejected.extend(section.mid.clone());
        }
    }
    Ok(Narrowed {
        sdp: join(session, &sections, &rejected),
        mid,
        rejected,
    })
}

/// str0m's answer with the `rejected` m-lines at port 0 as they should be: str0m
/// answers a data channel m-line even when the offer's port is 0 (it would sit idle, as
/// the browser never opens it after this answer).
pub(super) fn reject_in_answer(answer: String, rejected: &[String]) -> String {
    if rejected.is_empty() {
        return answer;
    }
    let Ok((session, mut sections)) = split(&answer) else {
        return answer;
    };
    for section in &mut sections {
        if section.usable() && section.mid.as_ref().is_some_and(|m| rejected.contains(m)) {
            section.reject();
        }
    }
    join(session, &sections, rejected)
}
