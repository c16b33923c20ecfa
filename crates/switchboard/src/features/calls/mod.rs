//! Calls: the dial plan so far; the B2BUA call engine, media anchoring and CDRs come
//! with the rest of the calls issue.

pub mod dialplan;
