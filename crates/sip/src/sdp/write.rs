//! SDP writer: RFC 8866 field order, CRLF line endings, single spaces between tokens.

use std::fmt::{self, Display, Formatter};

use super::{Attribute, Bandwidth, Connection, MediaDescription, Origin, SessionDescription};

impl Display for SessionDescription {
    /// The whole description, each line ending in CRLF.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "v={}\r\n", self.version)?;
        write!(f, "o={}\r\n", self.origin)?;
        write!(f, "s={}\r\n", self.session_name)?;
        line(f, 'i', self.info.as_ref())?;
        line(f, 'u', self.uri.as_ref())?;
        lines(f, 'e', &self.emails)?;
        lines(f, 'p', &self.phones)?;
        line(f, 'c', self.connection.as_ref())?;
        lines(f, 'b', &self.bandwidths)?;
        for timing in &self.times {
            write!(f, "t={} {}\r\n", timing.start, timing.stop)?;
            lines(f, 'r', &timing.repeats)?;
        }
        // After every time description: valid for RFC 4566 and RFC 8866 alike.
        line(f, 'z', self.time_zones.as_ref())?;
        line(f, 'k', self.key.as_ref())?;
        lines(f, 'a', &self.attributes)?;
        for media in &self.media {
            write!(f, "{media}")?;
        }
        Ok(())
    }
}

impl Display for MediaDescription {
    /// The whole `m=` section, each line ending in CRLF.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(n) = self.num_ports {
            write!(f, "/{n}")?;
        }
        write!(f, " {}", self.proto)?;
        for format in &self.formats {
            write!(f, " {format}")?;
        }
        f.write_str("\r\n")?;
        line(f, 'i', self.info.as_ref())?;
        line(f, 'c', self.connection.as_ref())?;
        lines(f, 'b', &self.bandwidths)?;
        line(f, 'k', self.key.as_ref())?;
        lines(f, 'a', &self.attributes)
    }
}

impl Display for Origin {
    /// The `o=` value.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {} {}",
            self.username,
            self.session_id,
            self.session_version,
            self.net_type,
            self.addr_type,
            self.address
        )
    }
}

impl Display for Connection {
    /// The `c=` value.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.net_type, self.addr_type, self.address)
    }
}

impl Display for Bandwidth {
    /// The `b=` value.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.bwtype, self.bandwidth)
    }
}

impl Display for Attribute {
    /// The `a=` value, `name` or `name:value`.
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(value) = &self.value {
            write!(f, ":{value}")?;
        }
        Ok(())
    }
}

fn line(f: &mut Formatter<'_>, kind: char, value: Option<&impl Display>) -> fmt::Result {
    match value {
        Some(value) => write!(f, "{kind}={value}\r\n"),
        None => Ok(()),
    }
}

fn lines(f: &mut Formatter<'_>, kind: char, values: &[impl Display]) -> fmt::Result {
    values.iter().try_for_each(|v| write!(f, "{kind}={v}\r\n"))
}
