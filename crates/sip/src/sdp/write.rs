//! SDP writer: RFC 8866 field order, CRLF line endings, single spaces between tokens.
//!
//! Written piece by piece (`write_str`, numbers through `itoa`) rather than with
//! `write!` and arguments: every call rewrites two descriptions, and each argument
//! took a trip through the formatter's padding.

use std::fmt::{self, Display, Formatter};

use super::{Attribute, Bandwidth, Connection, MediaDescription, Origin, SessionDescription};

impl Display for SessionDescription {
    /// The whole description, each line ending in CRLF.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("v=")?;
        f.write_str(itoa::Buffer::new().format(self.version))?;
        f.write_str("\r\no=")?;
        self.origin.fmt(f)?;
        f.write_str("\r\ns=")?;
        f.write_str(&self.session_name)?;
        f.write_str("\r\n")?;
        line(f, "i=", self.info.as_ref())?;
        line(f, "u=", self.uri.as_ref())?;
        lines(f, "e=", &self.emails)?;
        lines(f, "p=", &self.phones)?;
        line(f, "c=", self.connection.as_ref())?;
        lines(f, "b=", &self.bandwidths)?;
        for timing in &self.times {
            f.write_str("t=")?;
            f.write_str(itoa::Buffer::new().format(timing.start))?;
            f.write_str(" ")?;
            f.write_str(itoa::Buffer::new().format(timing.stop))?;
            f.write_str("\r\n")?;
            lines(f, "r=", &timing.repeats)?;
        }
        // After every time description: valid for RFC 4566 and RFC 8866 alike.
        line(f, "z=", self.time_zones.as_ref())?;
        line(f, "k=", self.key.as_ref())?;
        lines(f, "a=", &self.attributes)?;
        self.media.iter().try_for_each(|media| media.fmt(f))
    }
}

impl Display for MediaDescription {
    /// The whole `m=` section, each line ending in CRLF.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("m=")?;
        f.write_str(&self.media)?;
        f.write_str(" ")?;
        f.write_str(itoa::Buffer::new().format(self.port))?;
        if let Some(n) = self.num_ports {
            f.write_str("/")?;
            f.write_str(itoa::Buffer::new().format(n))?;
        }
        f.write_str(" ")?;
        f.write_str(&self.proto)?;
        for format in &self.formats {
            f.write_str(" ")?;
            f.write_str(format)?;
        }
        f.write_str("\r\n")?;
        line(f, "i=", self.info.as_ref())?;
        line(f, "c=", self.connection.as_ref())?;
        lines(f, "b=", &self.bandwidths)?;
        line(f, "k=", self.key.as_ref())?;
        lines(f, "a=", &self.attributes)
    }
}

impl Display for Origin {
    /// The `o=` value.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, part) in [
            &self.username,
            &self.session_id,
            &self.session_version,
            &self.net_type,
            &self.addr_type,
            &self.address,
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(part)?;
        }
        Ok(())
    }
}

impl Display for Connection {
    /// The `c=` value.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.net_type)?;
        f.write_str(" ")?;
        f.write_str(&self.addr_type)?;
        f.write_str(" ")?;
        f.write_str(&self.address)
    }
}

impl Display for Bandwidth {
    /// The `b=` value.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.bwtype)?;
        f.write_str(":")?;
        f.write_str(itoa::Buffer::new().format(self.bandwidth))
    }
}

impl Display for Attribute {
    /// The `a=` value, `name` or `name:value`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(value) = &self.value {
            f.write_str(":")?;
            f.write_str(value)?;
        }
        Ok(())
    }
}

/// `<kind>=<value>` CRLF, when there is a value.
fn line(f: &mut Formatter<'_>, kind: &str, value: Option<&impl Display>) -> fmt::Result {
    value.map_or(Ok(()), |v| value_line(f, kind, v))
}

fn lines(f: &mut Formatter<'_>, kind: &str, values: &[impl Display]) -> fmt::Result {
    values.iter().try_for_each(|v| value_line(f, kind, v))
}

fn value_line(f: &mut Formatter<'_>, kind: &str, value: &impl Display) -> fmt::Result {
    f.write_str(kind)?;
    value.fmt(f)?;
    f.write_str("\r\n")
}
