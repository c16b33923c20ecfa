//! Header names: the ones the stack knows (compact forms resolved, RFC 3261 §7.3.3),
//! and any other kept as written. Names compare case-insensitively.

use std::fmt;

macro_rules! known_headers {
    ($( $variant:ident => $canonical:literal $(, $compact:literal)? ; )*) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum HeaderName {
            $( $variant, )*
            /// Any other header, as written.
            Other(String),
        }

        impl HeaderName {
            /// The canonical spelling (`Call-ID`, `WWW-Authenticate`, …).
            pub fn as_str(&self) -> &str {
                match self {
                    $( Self::$variant => $canonical, )*
                    Self::Other(s) => s,
                }
            }

            /// Recognises a header name in any case, and the compact forms.
            pub fn parse(name: &str) -> Self {
                $(
                    if name.eq_ignore_ascii_case($canonical) $( || name.eq_ignore_ascii_case($compact) )? {
                        return Self::$variant;
                    }
                )*
                Self::Other(name.to_owned())
            }
        }
    };
}

known_headers! {
    Via => "Via", "v";
    From => "From", "f";
    To => "To", "t";
    CallId => "Call-ID", "i";
    CSeq => "CSeq";
    Contact => "Contact", "m";
    MaxForwards => "Max-Forwards";
    Expires => "Expires";
    MinExpires => "Min-Expires";
    Route => "Route";
    RecordRoute => "Record-Route";
    Authorization => "Authorization";
    ProxyAuthorization => "Proxy-Authorization";
    WwwAuthenticate => "WWW-Authenticate";
    ProxyAuthenticate => "Proxy-Authenticate";
    AuthenticationInfo => "Authentication-Info";
    ContentType => "Content-Type", "c";
    ContentLength => "Content-Length", "l";
    ContentEncoding => "Content-Encoding", "e";
    ContentDisposition => "Content-Disposition";
    Accept => "Accept";
    Allow => "Allow";
    AllowEvents => "Allow-Events", "u";
    Supported => "Supported", "k";
    Require => "Require";
    ProxyRequire => "Proxy-Require";
    Unsupported => "Unsupported";
    Event => "Event", "o";
    SubscriptionState => "Subscription-State";
    ReferTo => "Refer-To", "r";
    ReferredBy => "Referred-By", "b";
    Replaces => "Replaces";
    PAssertedIdentity => "P-Asserted-Identity";
    PPreferredIdentity => "P-Preferred-Identity";
    UserAgent => "User-Agent";
    Server => "Server";
    Date => "Date";
    RetryAfter => "Retry-After";
    Warning => "Warning";
    Subject => "Subject", "s";
    SessionExpires => "Session-Expires", "x";
    Path => "Path";
    Timestamp => "Timestamp";
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for HeaderName {
    fn eq(&self, other: &str) -> bool {
        self.as_str().eq_ignore_ascii_case(other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case() {
        assert_eq!(HeaderName::parse("v"), HeaderName::Via);
        assert_eq!(HeaderName::parse("CALL-id"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("l").as_str(), "Content-Length");
        assert_eq!(
            HeaderName::parse("C%6Fntact"),
            HeaderName::Other("C%6Fntact".into())
        );
        assert!(HeaderName::parse("X-Foo") == *"x-foo");
    }
}
