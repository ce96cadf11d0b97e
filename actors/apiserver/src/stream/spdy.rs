//! The server side of the SPDY/3.1 subset kubectl speaks for port-forward and for the exec
//! fallback: SYN_STREAM, SYN_REPLY, DATA, RST_STREAM, PING, GOAWAY; SETTINGS, HEADERS and
//! WINDOW_UPDATE are read and ignored. No maintained crate implements SPDY, and the subset is
//! small: client-go's spdystream never enforces flow-control windows, so neither do we.
//!
//! Header blocks are one zlib stream per direction (sync-flushed per frame) primed with the
//! SPDY/3 dictionary (`spdy3.dict`, the 1423 bytes of the spec, section 2.6.10.1).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures::stream::LocalBoxStream;
use futures::StreamExt;
use tokio::sync::mpsc;

/// The SPDY/3 header compression dictionary.
pub const DICTIONARY: &[u8] = include_bytes!("spdy3.dict");

const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;
const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
/// Largest frame accepted (kubectl's frames are at most 32 KiB of data).
const MAX_FRAME: usize = 16 << 20;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("SPDY frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed SPDY frame: {0}")]
    Malformed(&'static str),
    #[error("header block compression: {0}")]
    Compression(String),
    #[error("the peer's header dictionary (adler32 {0:#x}) is not the SPDY/3 one")]
    Dictionary(u32),
}

pub type Headers = Vec<(String, String)>;

/// The value of header `name` (names are lowercase in SPDY/3).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Ping(u32),
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    /// SETTINGS, HEADERS, WINDOW_UPDATE and unknown control frames.
    Ignored(u16),
}

/// Decodes frames from a byte stream; owns the inbound header decompressor.
pub struct FrameReader {
    buf: BytesMut,
    inflate: Decompress,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader { buf: BytesMut::new(), inflate: Decompress::new(true) }
    }
}

impl FrameReader {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, or `None` until more bytes arrive.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let len = ((self.buf[5] as usize) << 16) | ((self.buf[6] as usize) << 8) | self.buf[7] as usize;
        if len > MAX_FRAME {
            return Err(SpdyError::TooLarge(len));
        }
        if self.buf.len() < 8 + len {
            return Ok(None);
        }
        let mut head = self.buf.split_to(8);
        let mut body = self.buf.split_to(len).freeze();
        let first = head.get_u32();
        let flags = head[0];
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data { stream_id: first, fin: flags & FLAG_FIN != 0, data: body }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = (first & 0xffff) as u16;
        let need =
            |n: usize| if body.len() < n { Err(SpdyError::Malformed("control frame too short")) } else { Ok(()) };
        let frame = match kind {
            TYPE_SYN_STREAM => {
                need(10)?;
                let stream_id = body.get_u32() & 0x7fff_ffff;
                let associated_to = body.get_u32() & 0x7fff_ffff;
                body.advance(2); // priority, slot
                let headers = self.headers(&body)?;
                Frame::SynStream { stream_id, associated_to, fin: flags & FLAG_FIN != 0, headers }
            }
            TYPE_SYN_REPLY => {
                need(4)?;
                let stream_id = body.get_u32() & 0x7fff_ffff;
                let headers = self.headers(&body)?;
                Frame::SynReply { stream_id, fin: flags & FLAG_FIN != 0, headers }
            }
            TYPE_RST_STREAM => {
                need(8)?;
                Frame::RstStream { stream_id: body.get_u32() & 0x7fff_ffff, status: body.get_u32() }
            }
            TYPE_PING => {
                need(4)?;
                Frame::Ping(body.get_u32())
            }
            TYPE_GOAWAY => {
                need(8)?;
                Frame::GoAway { last_good_stream_id: body.get_u32() & 0x7fff_ffff, status: body.get_u32() }
            }
            TYPE_HEADERS => {
                need(4)?;
                body.advance(4);
                // Ignored, but the block must pass through the shared decompressor.
                self.headers(&body)?;
                Frame::Ignored(kind)
            }
            other => Frame::Ignored(other),
        };
        Ok(Some(frame))
    }

    fn headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate_block(block)?;
        parse_headers(&raw)
    }

    fn inflate_block(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(4096);
            }
            let (before_in, before_out) = (self.inflate.total_in(), self.inflate.total_out());
            let res = self.inflate.decompress_vec(&input[pos..], &mut out, FlushDecompress::Sync);
            pos += (self.inflate.total_in() - before_in) as usize;
            let produced = self.inflate.total_out() - before_out;
            match res {
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(adler) => {
                        let ours = self
                            .inflate
                            .set_dictionary(DICTIONARY)
                            .map_err(|e| SpdyError::Compression(e.to_string()))?;
                        if ours != adler {
                            return Err(SpdyError::Dictionary(adler));
                        }
                        continue;
                    }
                    None => return Err(SpdyError::Compression(e.to_string())),
                },
            }
            // Done once every input byte is in and the output had room to spare.
            if pos >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if produced == 0 && pos >= input.len() {
                return Ok(out);
            }
        }
    }
}

fn parse_headers(mut raw: &[u8]) -> Result<Headers, SpdyError> {
    let short = SpdyError::Malformed("header block too short");
    if raw.len() < 4 {
        return Err(short);
    }
    let n = raw.get_u32() as usize;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let mut field = || -> Result<String, SpdyError> {
            if raw.len() < 4 {
                return Err(SpdyError::Malformed("header block too short"));
            }
            let len = raw.get_u32() as usize;
            if raw.len() < len {
                return Err(SpdyError::Malformed("header block too short"));
            }
            let s = String::from_utf8_lossy(&raw[..len]).into_owned();
            raw.advance(len);
            Ok(s)
        };
        let name = field()?;
        let value = field()?;
        out.push((name.to_ascii_lowercase(), value));
    }
    Ok(out)
}

/// Encodes frames; owns the outbound header compressor.
pub struct FrameWriter {
    deflate: Compress,
}

impl FrameWriter {
    pub fn new() -> Result<FrameWriter, SpdyError> {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(DICTIONARY).map_err(|e| SpdyError::Compression(e.to_string()))?;
        Ok(FrameWriter { deflate })
    }

    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<(), SpdyError> {
        match frame {
            Frame::Data { stream_id, fin, data } => {
                out.put_u32(stream_id & 0x7fff_ffff);
                put_flags_len(out, if *fin { FLAG_FIN } else { 0 }, data.len());
                out.put_slice(data);
            }
            Frame::SynStream { stream_id, associated_to, fin, headers } => {
                let block = self.deflate_block(&encode_headers(headers))?;
                control(out, TYPE_SYN_STREAM, if *fin { FLAG_FIN } else { 0 }, 10 + block.len());
                out.put_u32(*stream_id);
                out.put_u32(*associated_to);
                out.put_u16(0);
                out.put_slice(&block);
            }
            Frame::SynReply { stream_id, fin, headers } => {
                let block = self.deflate_block(&encode_headers(headers))?;
                control(out, TYPE_SYN_REPLY, if *fin { FLAG_FIN } else { 0 }, 4 + block.len());
                out.put_u32(*stream_id);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control(out, TYPE_RST_STREAM, 0, 8);
                out.put_u32(*stream_id);
                out.put_u32(*status);
            }
            Frame::Ping(id) => {
                control(out, TYPE_PING, 0, 4);
                out.put_u32(*id);
            }
            Frame::GoAway { last_good_stream_id, status } => {
                control(out, TYPE_GOAWAY, 0, 8);
                out.put_u32(*last_good_stream_id);
                out.put_u32(*status);
            }
            // Nothing of SETTINGS or WINDOW_UPDATE is ever sent.
            Frame::Ignored(_) => {}
        }
        Ok(())
    }

    fn deflate_block(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&input[pos..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            pos += (self.deflate.total_in() - before) as usize;
            // A sync flush is complete when the compressor stopped with output room left.
            if pos >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, len: usize) {
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    put_flags_len(out, flags, len);
}

fn put_flags_len(out: &mut BytesMut, flags: u8, len: usize) {
    out.put_u8(flags);
    out.put_u8((len >> 16) as u8);
    out.put_u8((len >> 8) as u8);
    out.put_u8(len as u8);
}

fn encode_headers(headers: &Headers) -> Vec<u8> {
    let mut b = Vec::new();
    b.put_u32(headers.len() as u32);
    for (n, v) in headers {
        b.put_u32(n.len() as u32);
        b.put_slice(n.to_ascii_lowercase().as_bytes());
        b.put_u32(v.len() as u32);
        b.put_slice(v.as_bytes());
    }
    b
}

/// What the session reports to the code serving the streams.
#[derive(Debug)]
pub enum Event {
    /// A client stream; its SYN_REPLY went out already.
    Opened {
        stream_id: u32,
        headers: Headers,
        fin: bool,
    },
    Data {
        stream_id: u32,
        data: Bytes,
        fin: bool,
    },
    Reset {
        stream_id: u32,
    },
}

/// Sends frames on a session (cheap to clone).
#[derive(Clone)]
pub struct SpdyWriter {
    tx: mpsc::Sender<Frame>,
}

impl SpdyWriter {
    /// Data on a stream; `fin` half-closes it. False once the connection is gone.
    pub async fn data(&self, stream_id: u32, data: Bytes, fin: bool) -> bool {
        self.tx.send(Frame::Data { stream_id, fin, data }).await.is_ok()
    }
    pub async fn reset(&self, stream_id: u32, status: u32) -> bool {
        self.tx.send(Frame::RstStream { stream_id, status }).await.is_ok()
    }
    /// Ends the session: a GOAWAY, after which the connection closes once written.
    pub async fn go_away(self) {
        let _ = self.tx.send(Frame::GoAway { last_good_stream_id: 0, status: 0 }).await;
    }
}

/// Runs a server session over a byte transport: `incoming` is what the client sends, `outgoing`
/// takes what goes back. Frames are encoded by one task (the compressor is connection state);
/// the returned events end when the client's bytes end or a protocol error occurs.
pub fn start(
    mut incoming: LocalBoxStream<'static, Bytes>,
    outgoing: mpsc::Sender<Bytes>,
) -> Result<(SpdyWriter, mpsc::Receiver<Event>), SpdyError> {
    let mut writer = FrameWriter::new()?;
    let (frames_tx, mut frames_rx) = mpsc::channel::<Frame>(64);
    actix_web::rt::spawn(async move {
        while let Some(f) = frames_rx.recv().await {
            let mut out = BytesMut::new();
            if let Err(e) = writer.encode(&f, &mut out) {
                tracing::warn!(error = %e, "cannot encode a SPDY frame");
                return;
            }
            let last = matches!(f, Frame::GoAway { .. });
            if !out.is_empty() && outgoing.send(out.freeze()).await.is_err() {
                return;
            }
            if last {
                return;
            }
        }
    });
    let (events_tx, events_rx) = mpsc::channel::<Event>(64);
    let writer = SpdyWriter { tx: frames_tx };
    let frames = writer.tx.clone();
    actix_web::rt::spawn(async move {
        let mut reader = FrameReader::default();
        while let Some(bytes) = incoming.next().await {
            reader.push(&bytes);
            loop {
                let frame = match reader.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(error = %e, "SPDY protocol error; closing the session");
                        let _ = frames.send(Frame::GoAway { last_good_stream_id: 0, status: 1 }).await;
                        return;
                    }
                };
                let event = match frame {
                    Frame::SynStream { stream_id, fin, headers, .. } => {
                        // client-go waits for the reply before using a stream.
                        let reply = Frame::SynReply { stream_id, fin: false, headers: Vec::new() };
                        if frames.send(reply).await.is_err() {
                            return;
                        }
                        Event::Opened { stream_id, headers, fin }
                    }
                    Frame::Data { stream_id, fin, data } => Event::Data { stream_id, data, fin },
                    Frame::RstStream { stream_id, .. } => Event::Reset { stream_id },
                    Frame::Ping(id) => {
                        // Echo: client-go pings to keep the tunnel alive.
                        let _ = frames.send(Frame::Ping(id)).await;
                        continue;
                    }
                    Frame::GoAway { .. } => return,
                    Frame::SynReply { .. } | Frame::Ignored(_) => continue,
                };
                if events_tx.send(event).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok((writer, events_rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_shared_compressors() {
        // A client-side writer and a server-side reader share nothing but the dictionary.
        let mut w = FrameWriter::new().unwrap();
        let mut r = FrameReader::default();
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                fin: false,
                headers: vec![("streamtype".into(), "error".into()), ("port".into(), "8080".into())],
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                fin: false,
                headers: vec![("streamtype".into(), "data".into()), ("requestid".into(), "0".into())],
            },
            Frame::Data { stream_id: 3, fin: true, data: Bytes::from_static(b"GET / HTTP/1.0\r\n\r\n") },
            Frame::SynReply { stream_id: 1, fin: false, headers: vec![] },
            Frame::RstStream { stream_id: 3, status: RST_CANCEL },
            Frame::Ping(7),
            Frame::GoAway { last_good_stream_id: 3, status: 0 },
        ];
        let mut wire = BytesMut::new();
        for f in &frames {
            w.encode(f, &mut wire).unwrap();
        }
        // Delivered in awkward pieces, as a transport may.
        let mut got = Vec::new();
        for piece in wire.chunks(5) {
            r.push(piece);
            while let Some(f) = r.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        assert_eq!(DICTIONARY.len(), 1423);
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        let mut r = FrameReader::default();
        r.push(&[0x80, 0x02, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00]);
        assert!(matches!(r.next_frame(), Err(SpdyError::Version(2))));
        let mut r = FrameReader::default();
        let mut f = vec![0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 14];
        f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        r.push(&f);
        assert!(matches!(r.next_frame(), Err(SpdyError::Compression(_))));
    }
}
