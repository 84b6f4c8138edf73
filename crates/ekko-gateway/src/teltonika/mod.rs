//! Teltonika: the binary AVL protocol of Teltonika trackers (FMB, FMC, FMM, … series), over TCP
//! and UDP on the same port (default 5027, as Traccar).
//!
//! - [`codec`]: the wire format, pure (handshake, frames, Codec 8 / 8 Extended / 16 records,
//!   CRC-16/IBM, acknowledgements, and a Codec 8 encoder for the simulator and tests).
//! - [`records`]: AVL records → `TrackRecord`s in Munic field names and units (the IO table).
//! - [`tcp`], [`udp`]: the thin listeners. Every acknowledgement follows
//!   `Ekko::ingest_tracks`, i.e. the durable commit of all records of the packet; resends are
//!   de-duplicated by the domain and still acknowledged.

mod bind;
pub mod codec;
pub mod records;
pub mod tcp;
pub mod udp;

pub use bind::bind;
