-- SIP registrar: bindings (the location service) and the registered-phone inventory.

-- One row per binding of an address-of-record (extension) to a contact.
CREATE TABLE registrations (
    extension    TEXT NOT NULL REFERENCES extensions (number) ON DELETE CASCADE ON UPDATE CASCADE,
    -- The binding's identity: the +sip.instance (with reg-id) when given, else the contact URI.
    binding_key  TEXT NOT NULL,
    contact_uri  TEXT NOT NULL,
    instance_id  TEXT,
    reg_id       BIGINT,
    q            BIGINT,
    expires_at   BIGINT NOT NULL,
    call_id      TEXT NOT NULL,
    cseq         BIGINT NOT NULL,
    transport    TEXT NOT NULL,
    source_ip    TEXT NOT NULL,
    source_port  BIGINT NOT NULL,
    user_agent   TEXT,
    mac_address  TEXT,
    node         TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (extension, binding_key)
);
CREATE INDEX registrations_expires ON registrations (expires_at);

-- Seed 004: which physical devices registered for which extension. Rows stay when the
-- binding expires (an inventory, not the location table).
CREATE TABLE registered_phones (
    id               BIGSERIAL PRIMARY KEY,
    mac_address      TEXT,
    extension_number TEXT NOT NULL,
    user_agent       TEXT,
    ip_address       TEXT NOT NULL,
    first_registered BIGINT NOT NULL,
    last_registered  BIGINT NOT NULL,
    contact_uri      TEXT
);
-- A device is its MAC when known, else its IP address, per extension.
CREATE UNIQUE INDEX registered_phones_mac ON registered_phones (extension_number, mac_address) WHERE mac_address IS NOT NULL;
CREATE UNIQUE INDEX registered_phones_ip ON registered_phones (extension_number, ip_address) WHERE mac_address IS NULL;
CREATE INDEX registered_phones_ip_lookup ON registered_phones (ip_address);
