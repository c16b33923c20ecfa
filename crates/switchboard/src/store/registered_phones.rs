//! Table `registered_phones` (seed 004): the devices seen registering, per extension,
//! identified by MAC when known, else by IP address.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, Executor, Row};

use super::{Conn, Result, flag};
use crate::time::Timestamp;

/// One sighting of a device registering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    pub extension: String,
    /// 12 lowercase hex digits, or a `webrtc-…` marker; `None` when unknown.
    pub mac_address: Option<String>,
    pub ip_address: String,
    pub user_agent: Option<String>,
    pub contact_uri: Option<String>,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneRow {
    pub id: i64,
    pub mac_address: Option<String>,
    pub extension_number: String,
    pub user_agent: Option<String>,
    pub ip_address: String,
    pub first_registered: Timestamp,
    pub last_registered: Timestamp,
    pub contact_uri: Option<String>,
    /// A live binding of the extension comes from this device.
    pub registered_now: bool,
}

/// Rows per statement, well under both databases' bound-parameter limits.
const RECORD_CHUNK: usize = 200;

/// Records sightings: inserts each device or updates its address, contact, agent and
/// last registration (never a duplicate row). Several sightings of one device keep
/// the last.
pub async fn record_many(conn: &mut Conn, sightings: &[&Sighting]) -> Result<()> {
    let mut last: HashMap<(&str, &str, bool), &Sighting> = HashMap::new();
    for s in sightings {
        let id = s.mac_address.as_deref().unwrap_or(&s.ip_address);
        last.insert((&s.extension, id, s.mac_address.is_some()), s);
    }
    let (by_mac, by_ip): (Vec<&Sighting>, Vec<&Sighting>) =
        last.into_values().partition(|s| s.mac_address.is_some());
    for (group, target) in [
        (
            by_mac,
            "(extension_number, mac_address) WHERE mac_address IS NOT NULL",
        ),
        (
            by_ip,
            "(extension_number, ip_address) WHERE mac_address IS NULL",
        ),
    ] {
        for chunk in group.chunks(RECORD_CHUNK) {
            let sql = format!(
                "INSERT INTO registered_phones (mac_address, extension_number, user_agent, ip_address, \
                 first_registered, last_registered, contact_uri) VALUES {} \
                 ON CONFLICT {target} DO UPDATE SET user_agent = excluded.user_agent, \
                 ip_address = excluded.ip_address, last_registered = excluded.last_registered, \
                 contact_uri = excluded.contact_uri",
                super::row_placeholders(conn, chunk.len(), 7)
            );
            // Fixed fragments and placeholders only.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for s in chunk {
                q = q
                    .bind(&s.mac_address)
                    .bind(&s.extension)
                    .bind(&s.user_agent)
                    .bind(&s.ip_address)
                    .bind(s.at.millis())
                    .bind(s.at.millis())
                    .bind(&s.contact_uri);
            }
            q.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct PhoneFilter {
    pub extension: Option<String>,
    pub mac_address: Option<String>,
    pub ip_address: Option<String>,
    pub id: Option<i64>,
}

fn from_row(r: &AnyRow) -> Result<PhoneRow> {
    Ok(PhoneRow {
        id: r.try_get("id")?,
        mac_address: r.try_get("mac_address")?,
        extension_number: r.try_get("extension_number")?,
        user_agent: r.try_get("user_agent")?,
        ip_address: r.try_get("ip_address")?,
        first_registered: Timestamp(r.try_get("first_registered")?),
        last_registered: Timestamp(r.try_get("last_registered")?),
        contact_uri: r.try_get("contact_uri")?,
        registered_now: flag(r, "registered_now")?,
    })
}

/// Devices matching `filter`, oldest first, each with whether it is registered now.
pub async fn list<'c>(
    exec: impl Executor<'c, Database = Any>,
    filter: &PhoneFilter,
    now: Timestamp,
) -> Result<Vec<PhoneRow>> {
    let mut sql = String::from(
        "SELECT p.id, p.mac_address, p.extension_number, p.user_agent, p.ip_address, p.first_registered, \
         p.last_registered, p.contact_uri, \
         CASE WHEN EXISTS (SELECT 1 FROM registrations r WHERE r.extension = p.extension_number \
           AND r.expires_at > $1 AND (r.mac_address = p.mac_address \
           OR (p.mac_address IS NULL AND r.source_ip = p.ip_address))) THEN 1 ELSE 0 END AS registered_now \
         FROM registered_phones p WHERE 1 = 1",
    );
    let mut texts = Vec::new();
    if let Some(e) = &filter.extension {
        texts.push(e.clone());
        sql.push_str(&format!(" AND p.extension_number = ${}", texts.len() + 1));
    }
    if let Some(m) = &filter.mac_address {
        texts.push(m.clone());
        sql.push_str(&format!(" AND p.mac_address = ${}", texts.len() + 1));
    }
    if let Some(ip) = &filter.ip_address {
        texts.push(ip.clone());
        sql.push_str(&format!(" AND p.ip_address = ${}", texts.len() + 1));
    }
    if filter.id.is_some() {
        sql.push_str(&format!(" AND p.id = ${}", texts.len() + 2));
    }
    sql.push_str(" ORDER BY p.id");
    // Built from fixed fragments; every value is a bound parameter.
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now.millis());
    for t in texts {
        q = q.bind(t);
    }
    if let Some(id) = filter.id {
        q = q.bind(id);
    }
    let rows = q.fetch_all(exec).await?;
    rows.iter().map(from_row).collect()
}

pub async fn delete<'c>(exec: impl Executor<'c, Database = Any>, id: i64) -> Result<bool> {
    let done = sqlx::query("DELETE FROM registered_phones WHERE id = $1")
        .bind(id)
        .execute(exec)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes the row of one device of an extension, by its MAC or marker (a browser
/// session's row when the session ends).
pub async fn delete_by_mac(conn: &mut Conn, extension: &str, mac_address: &str) -> Result<bool> {
    let done = sqlx::query(
        "DELETE FROM registered_phones WHERE extension_number = $1 AND mac_address = $2",
    )
    .bind(extension)
    .bind(mac_address)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
