//! The Teltonika wire format, pure: bytes ⇄ values, no I/O.
//!
//! Parsing is split, as for every stream protocol in Ekko, into a cheap check ("is a whole frame
//! buffered?", where *incomplete* is `Ok(None)`, not an error) and a parse of one whole frame.
//!
//! TCP: the device opens with its IMEI (`u16` length + ASCII digits), the server answers `0x01`
//! (accepted) or `0x00` (refused). Then AVL packets:
//! `00 00 00 00 | data length u32 | codec id u8 | N1 u8 | N1 records | N2 u8 | CRC u32`, where the
//! CRC-16/IBM of the data field (codec id … N2) sits in the low two bytes. The server answers
//! the number of records as a `u32` once they are stored.
//!
//! UDP: `length u16 | packet id u16 | packet type u8 | AVL packet id u8 | IMEI length u16 | IMEI |
//! codec id | N1 | records | N2` (no CRC: UDP has its own checksum). The acknowledgement is
//! `00 05 | packet id u16 | 01 | AVL packet id u8 | N accepted u8`.
//!
//! Records, all big-endian: `timestamp u64 (unix ms) | priority u8 | longitude i32 | latitude
//! i32 (1e-7 degree) | altitude i16 (m) | angle u16 (degree) | satellites u8 | speed u16 (km/h)`
//! then the IO elements, whose layout depends on the codec:
//! - Codec 8 (`0x08`): event IO id u8, total u8, then groups of 1-, 2-, 4- and 8-byte values,
//!   each `count u8` followed by `(id u8, value)` pairs;
//! - Codec 8 Extended (`0x8E`): ids and counts are u16, plus a last group of variable-length
//!   values `(id u16, length u16, bytes)`;
//! - Codec 16 (`0x10`): event IO id u16, generation type u8, total u8, counts u8, ids u16.

use thiserror::Error;

/// Largest AVL data field accepted (a device sends at most a few KiB per packet); bounds the
/// buffer of a connection.
pub const MAX_DATA_LEN: usize = 64 * 1024;
/// Largest TCP frame: preamble, length, data, CRC.
pub const MAX_FRAME: usize = MAX_DATA_LEN + 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Codec8,
    Codec8Extended,
    Codec16,
}

impl Codec {
    pub fn id(self) -> u8 {
        match self {
            Codec::Codec8 => 0x08,
            Codec::Codec8Extended => 0x8E,
            Codec::Codec16 => 0x10,
        }
    }

    fn from_id(id: u8) -> Result<Self, CodecError> {
        match id {
            0x08 => Ok(Codec::Codec8),
            0x8E => Ok(Codec::Codec8Extended),
            0x10 => Ok(Codec::Codec16),
            other => Err(CodecError::UnsupportedCodec(other)),
        }
    }
}

/// What is wrong with a frame. None of these is acknowledged: the device resends.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum CodecError {
    #[error("frame truncated while reading {0}")]
    Truncated(&'static str),
    #[error("an AVL packet must start with four zero bytes")]
    BadPreamble,
    #[error("declared length {0} exceeds the limit of {MAX_DATA_LEN} bytes")]
    TooLarge(usize),
    #[error("CRC mismatch: the frame says {expected:#06x}, its data gives {computed:#06x}")]
    BadCrc { expected: u32, computed: u16 },
    #[error("codec {0:#04x} is not supported (Codec 8, 8 Extended and 16 are)")]
    UnsupportedCodec(u8),
    #[error("the record counts disagree: {first} at the start, {last} at the end")]
    CountMismatch { first: u8, last: u8 },
    #[error("{0} unexpected bytes after the last record")]
    TrailingBytes(usize),
    #[error("the IMEI is not 1 to 20 ASCII digits")]
    BadImei,
    #[error("the UDP length field says {declared} bytes, the datagram has {actual}")]
    BadUdpLength { declared: usize, actual: usize },
}

/// CRC-16/IBM (also called ARC): polynomial 0x8005 reflected (0xA001), initial value 0.
pub fn crc16_ibm(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// One IO element's value, as wide as the device sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoValue {
    U8(u8),
    U16(u16),
    U32(u32),
    U64(u64),
    /// A variable-length value (Codec 8 Extended only).
    Bytes(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoElement {
    pub id: u16,
    pub value: IoValue,
}

/// One AVL record, with the raw values of the wire (units converted later, in `records`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvlRecord {
    /// Unix milliseconds.
    pub timestamp_ms: u64,
    pub priority: u8,
    /// 1e-7 degree.
    pub longitude: i32,
    /// 1e-7 degree.
    pub latitude: i32,
    /// Metres.
    pub altitude: i16,
    /// Degrees.
    pub angle: u16,
    pub satellites: u8,
    /// km/h.
    pub speed_kmh: u16,
    /// The IO element that triggered the record (0: none).
    pub event_io: u16,
    /// Codec 16's generation type.
    pub generation: Option<u8>,
    pub io: Vec<IoElement>,
}

/// The data field of one AVL packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvlPacket {
    pub codec: Codec,
    pub records: Vec<AvlRecord>,
}

/// A UDP datagram: its header (echoed in the acknowledgement) and its AVL packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpPacket {
    pub packet_id: u16,
    pub avl_packet_id: u8,
    pub imei: String,
    pub packet: AvlPacket,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(CodecError::Truncated(what))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, CodecError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, CodecError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, CodecError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

fn check_imei_digits(bytes: &[u8]) -> Result<String, CodecError> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(CodecError::BadImei);
    }
    Ok(bytes.iter().map(|&b| char::from(b)).collect())
}

/// The TCP handshake: `Ok(Some((imei, bytes consumed)))` once it is whole, `Ok(None)` while
/// incomplete.
pub fn decode_imei(buf: &[u8]) -> Result<Option<(String, usize)>, CodecError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
    if len == 0 || len > 20 {
        return Err(CodecError::BadImei);
    }
    if buf.len() < 2 + len {
        return Ok(None);
    }
    Ok(Some((check_imei_digits(&buf[2..2 + len])?, 2 + len)))
}

/// Is a whole TCP AVL frame buffered? `Ok(Some(length))` if so, `Ok(None)` if more bytes are
/// needed, an error if the bytes cannot start a valid frame (the connection must be closed:
/// there is no way to find the next frame).
pub fn check_frame(buf: &[u8]) -> Result<Option<usize>, CodecError> {
    let head = buf.len().min(4);
    if buf[..head].iter().any(|&b| b != 0) {
        return Err(CodecError::BadPreamble);
    }
    if buf.len() < 8 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
    if len > MAX_DATA_LEN {
        return Err(CodecError::TooLarge(len));
    }
    let total = 8 + len + 4;
    Ok((buf.len() >= total).then_some(total))
}

/// Parses one whole TCP frame (as delimited by [`check_frame`]), checking its CRC.
pub fn parse_tcp_frame(frame: &[u8]) -> Result<AvlPacket, CodecError> {
    let mut r = Reader::new(frame);
    if r.u32("the preamble")? != 0 {
        return Err(CodecError::BadPreamble);
    }
    let len = r.u32("the data length")? as usize;
    if len > MAX_DATA_LEN {
        return Err(CodecError::TooLarge(len));
    }
    let data = r.take(len, "the data field")?;
    let expected = r.u32("the CRC")?;
    if r.remaining() != 0 {
        return Err(CodecError::TrailingBytes(r.remaining()));
    }
    let computed = crc16_ibm(data);
    if expected != u32::from(computed) {
        return Err(CodecError::BadCrc { expected, computed });
    }
    parse_data(data)
}

/// Parses one UDP datagram.
pub fn parse_udp_datagram(datagram: &[u8]) -> Result<UdpPacket, CodecError> {
    let mut r = Reader::new(datagram);
    let declared = usize::from(r.u16("the UDP length")?);
    if declared != r.remaining() {
        return Err(CodecError::BadUdpLength {
            declared,
            actual: r.remaining(),
        });
    }
    let packet_id = r.u16("the packet id")?;
    let _packet_type = r.u8("the packet type")?;
    let avl_packet_id = r.u8("the AVL packet id")?;
    let imei_len = usize::from(r.u16("the IMEI length")?);
    let imei = check_imei_digits(r.take(imei_len, "the IMEI")?)?;
    let packet = parse_data(&datagram[r.pos..])?;
    Ok(UdpPacket {
        packet_id,
        avl_packet_id,
        imei,
        packet,
    })
}

/// The data field: codec id, N1, records, N2; every byte must be used.
fn parse_data(data: &[u8]) -> Result<AvlPacket, CodecError> {
    let mut r = Reader::new(data);
    let codec = Codec::from_id(r.u8("the codec id")?)?;
    let first = r.u8("the record count")?;
    let mut records = Vec::with_capacity(usize::from(first));
    for _ in 0..first {
        records.push(parse_record(&mut r, codec)?);
    }
    let last = r.u8("the closing record count")?;
    if first != last {
        return Err(CodecError::CountMismatch { first, last });
    }
    if r.remaining() != 0 {
        return Err(CodecError::TrailingBytes(r.remaining()));
    }
    Ok(AvlPacket { codec, records })
}

fn parse_record(r: &mut Reader<'_>, codec: Codec) -> Result<AvlRecord, CodecError> {
    let timestamp_ms = r.u64("a timestamp")?;
    let priority = r.u8("a priority")?;
    let longitude = r.u32("a longitude")? as i32;
    let latitude = r.u32("a latitude")? as i32;
    let altitude = r.u16("an altitude")? as i16;
    let angle = r.u16("an angle")?;
    let satellites = r.u8("a satellite count")?;
    let speed_kmh = r.u16("a speed")?;
    let wide = codec == Codec::Codec8Extended;
    // Ids are u16 in 8E and 16; counts are u16 in 8E only.
    let id = |r: &mut Reader<'_>| -> Result<u16, CodecError> {
        if codec == Codec::Codec8 {
            r.u8("an IO id").map(u16::from)
        } else {
            r.u16("an IO id")
        }
    };
    let count = |r: &mut Reader<'_>| -> Result<u16, CodecError> {
        if wide {
            r.u16("an IO count")
        } else {
            r.u8("an IO count").map(u16::from)
        }
    };
    let event_io = id(r)?;
    let generation = if codec == Codec::Codec16 {
        Some(r.u8("a generation type")?)
    } else {
        None
    };
    let _total = count(r)?;
    let mut io = Vec::new();
    for width in [1usize, 2, 4, 8] {
        let n = count(r)?;
        for _ in 0..n {
            let id = id(r)?;
            let value = match width {
                1 => IoValue::U8(r.u8("an IO value")?),
                2 => IoValue::U16(r.u16("an IO value")?),
                4 => IoValue::U32(r.u32("an IO value")?),
                _ => IoValue::U64(r.u64("an IO value")?),
            };
            io.push(IoElement { id, value });
        }
    }
    if wide {
        let n = r.u16("the variable-length IO count")?;
        for _ in 0..n {
            let id = r.u16("an IO id")?;
            let len = usize::from(r.u16("an IO length")?);
            let bytes = r.take(len, "a variable-length IO value")?.to_vec();
            io.push(IoElement {
                id,
                value: IoValue::Bytes(bytes),
            });
        }
    }
    Ok(AvlRecord {
        timestamp_ms,
        priority,
        longitude,
        latitude,
        altitude,
        angle,
        satellites,
        speed_kmh,
        event_io,
        generation,
        io,
    })
}

/// The TCP acknowledgement: the number of records stored.
pub fn tcp_ack(records: u32) -> [u8; 4] {
    records.to_be_bytes()
}

/// The UDP acknowledgement of `packet`, accepting `records` records.
pub fn udp_ack(packet_id: u16, avl_packet_id: u8, records: u8) -> [u8; 7] {
    let id = packet_id.to_be_bytes();
    [0x00, 0x05, id[0], id[1], 0x01, avl_packet_id, records]
}

/// The TCP handshake a device sends: its IMEI.
pub fn encode_imei(imei: &str) -> Vec<u8> {
    let mut out = (imei.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(imei.as_bytes());
    out
}

/// Encodes records as a Codec 8 data field (codec id … N2). At most 255 records and 255 IO
/// elements per width; variable-length values (`IoValue::Bytes`) and ids above 255 do not exist
/// in Codec 8 and are skipped. Used by the simulator and the tests.
pub fn encode_codec8_data(records: &[AvlRecord]) -> Vec<u8> {
    let n = records.len().min(255) as u8;
    let mut out = vec![Codec::Codec8.id(), n];
    for rec in &records[..usize::from(n)] {
        out.extend_from_slice(&rec.timestamp_ms.to_be_bytes());
        out.push(rec.priority);
        out.extend_from_slice(&rec.longitude.to_be_bytes());
        out.extend_from_slice(&rec.latitude.to_be_bytes());
        out.extend_from_slice(&rec.altitude.to_be_bytes());
        out.extend_from_slice(&rec.angle.to_be_bytes());
        out.push(rec.satellites);
        out.extend_from_slice(&rec.speed_kmh.to_be_bytes());
        out.push(u8::try_from(rec.event_io).unwrap_or(0));
        let fits = |e: &&IoElement| e.id <= 255;
        let group = |w: usize| -> Vec<&IoElement> {
            rec.io
                .iter()
                .filter(fits)
                .filter(|e| {
                    matches!(
                        (&e.value, w),
                        (IoValue::U8(_), 1)
                            | (IoValue::U16(_), 2)
                            | (IoValue::U32(_), 4)
                            | (IoValue::U64(_), 8)
                    )
                })
                .take(255)
                .collect()
        };
        let groups: Vec<Vec<&IoElement>> = [1, 2, 4, 8].into_iter().map(group).collect();
        let total: usize = groups.iter().map(Vec::len).sum();
        out.push(total.min(255) as u8);
        for g in &groups {
            out.push(g.len() as u8);
            for e in g {
                out.push(e.id as u8);
                match &e.value {
                    IoValue::U8(v) => out.push(*v),
                    IoValue::U16(v) => out.extend_from_slice(&v.to_be_bytes()),
                    IoValue::U32(v) => out.extend_from_slice(&v.to_be_bytes()),
                    IoValue::U64(v) => out.extend_from_slice(&v.to_be_bytes()),
                    IoValue::Bytes(_) => {}
                }
            }
        }
    }
    out.push(n);
    out
}

/// Wraps a data field into a TCP frame (preamble, length, CRC).
pub fn encode_tcp_frame(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0];
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&u32::from(crc16_ibm(data)).to_be_bytes());
    out
}

/// Wraps a data field into a UDP datagram.
pub fn encode_udp_datagram(packet_id: u16, avl_packet_id: u8, imei: &str, data: &[u8]) -> Vec<u8> {
    let body_len = 2 + 1 + 1 + 2 + imei.len() + data.len();
    let mut out = (body_len as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&packet_id.to_be_bytes());
    out.push(0x01);
    out.push(avl_packet_id);
    out.extend_from_slice(&(imei.len() as u16).to_be_bytes());
    out.extend_from_slice(imei.as_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AvlRecord {
        AvlRecord {
            timestamp_ms: 1_700_000_000_123,
            priority: 1,
            longitude: 22_944_810,
            latitude: 488_583_700,
            altitude: -5,
            angle: 90,
            satellites: 9,
            speed_kmh: 40,
            event_io: 239,
            generation: None,
            io: vec![
                IoElement {
                    id: 239,
                    value: IoValue::U8(1),
                },
                IoElement {
                    id: 66,
                    value: IoValue::U16(12_900),
                },
                IoElement {
                    id: 16,
                    value: IoValue::U32(123_456),
                },
                IoElement {
                    id: 78,
                    value: IoValue::U64(u64::MAX),
                },
            ],
        }
    }

    #[test]
    fn crc16_ibm_matches_the_check_value() {
        // The catalogued check value of CRC-16/ARC for "123456789".
        assert_eq!(crc16_ibm(b"123456789"), 0xBB3D);
    }

    #[test]
    fn codec8_encoding_round_trips() {
        let frame = encode_tcp_frame(&encode_codec8_data(&[record(), record()]));
        assert_eq!(check_frame(&frame), Ok(Some(frame.len())));
        let packet = parse_tcp_frame(&frame).unwrap();
        assert_eq!(packet.codec, Codec::Codec8);
        assert_eq!(packet.records, vec![record(), record()]);
    }

    #[test]
    fn an_incomplete_frame_is_not_an_error() {
        let frame = encode_tcp_frame(&encode_codec8_data(&[record()]));
        for cut in 0..frame.len() {
            assert_eq!(check_frame(&frame[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(decode_imei(&[0, 15, b'3']), Ok(None));
    }

    #[test]
    fn a_bad_crc_is_refused() {
        let mut frame = encode_tcp_frame(&encode_codec8_data(&[record()]));
        let n = frame.len();
        frame[n - 1] ^= 0xFF;
        assert!(matches!(
            parse_tcp_frame(&frame),
            Err(CodecError::BadCrc { .. })
        ));
    }

    #[test]
    fn garbage_before_a_frame_is_refused() {
        assert_eq!(check_frame(b"GET / HTTP/1.1"), Err(CodecError::BadPreamble));
        assert_eq!(
            check_frame(&[0, 0, 0, 0, 0x7F, 0, 0, 0]),
            Err(CodecError::TooLarge(0x7F00_0000))
        );
    }

    #[test]
    fn the_imei_handshake_is_decoded() {
        let hs = encode_imei("356307042441013");
        assert_eq!(
            decode_imei(&hs),
            Ok(Some(("356307042441013".to_string(), 17)))
        );
        assert_eq!(
            decode_imei(&[0, 3, b'1', b'x', b'3']),
            Err(CodecError::BadImei)
        );
        assert_eq!(decode_imei(&[0, 0]), Err(CodecError::BadImei));
    }

    #[test]
    fn udp_datagrams_round_trip_and_acks_echo_the_ids() {
        let d = encode_udp_datagram(
            0xCAFE,
            7,
            "356307042441013",
            &encode_codec8_data(&[record()]),
        );
        let p = parse_udp_datagram(&d).unwrap();
        assert_eq!((p.packet_id, p.avl_packet_id), (0xCAFE, 7));
        assert_eq!(p.imei, "356307042441013");
        assert_eq!(p.packet.records, vec![record()]);
        assert_eq!(udp_ack(0xCAFE, 7, 1), [0, 5, 0xCA, 0xFE, 1, 7, 1]);
        assert_eq!(tcp_ack(14), [0, 0, 0, 14]);
    }

    #[test]
    fn mismatched_record_counts_are_refused() {
        let mut data = encode_codec8_data(&[record()]);
        let n = data.len();
        data[n - 1] = 2;
        assert_eq!(
            parse_tcp_frame(&encode_tcp_frame(&data)),
            Err(CodecError::CountMismatch { first: 1, last: 2 })
        );
    }
}
