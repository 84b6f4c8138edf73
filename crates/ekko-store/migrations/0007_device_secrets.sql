-- Optional per-device secret: SHA-256 (hex) of the secret `ekko device secret` printed once.
-- NULL: the device is identified by its IMEI alone (what the protocol offers).
ALTER TABLE devices ADD COLUMN secret_hash TEXT;
