//! Container logs in the CRI format kubelet reads: one record per line,
//! `<RFC3339Nano UTC> <stdout|stderr> <F|P> <text>\n`, `P` marking a partial chunk of a longer
//! line (cut at 16 KiB) or output that ended without a newline.
//!
//! The writer runs in the shim (blocking file writes); the reader serves `kubectl logs`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncSeekExt, BufReader};
use tokio::sync::watch;

use crate::timefmt::{format_rfc3339_nano, parse_rfc3339};

/// Longest text of one record, as containerd's 16 KiB line buffer.
pub const MAX_RECORD: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(&self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("log file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Appends a container's output to its CRI log, cutting it into records.
pub struct CriLogWriter {
    file: File,
    /// Bytes of a line not yet ended, per stream (stdout, stderr).
    pending: [Vec<u8>; 2],
}

impl CriLogWriter {
    pub fn open(path: &Path) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file, pending: [Vec::new(), Vec::new()] })
    }

    /// Writes every complete line of `data` (with what was pending before it) and keeps the rest,
    /// except that a line reaching `MAX_RECORD` bytes is written as `P` chunks.
    pub fn write(&mut self, stream: LogStream, data: &[u8]) -> io::Result<()> {
        let idx = stream as usize;
        let mut buf = std::mem::take(&mut self.pending[idx]);
        buf.extend_from_slice(data);
        let mut start = 0;
        let mut out = Vec::new();
        loop {
            let rest = &buf[start..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(nl) if nl <= MAX_RECORD => {
                    record(&mut out, stream, false, &rest[..nl]);
                    start += nl + 1;
                }
                _ if rest.len() >= MAX_RECORD => {
                    record(&mut out, stream, true, &rest[..MAX_RECORD]);
                    start += MAX_RECORD;
                }
                _ => break,
            }
        }
        buf.drain(..start);
        self.pending[idx] = buf;
        if !out.is_empty() {
            self.file.write_all(&out)?;
        }
        Ok(())
    }

    /// At the end of a stream: what is left has no newline, so it becomes a `P` record.
    pub fn finish(&mut self, stream: LogStream) -> io::Result<()> {
        let buf = std::mem::take(&mut self.pending[stream as usize]);
        if buf.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        record(&mut out, stream, true, &buf);
        self.file.write_all(&out)
    }
}

fn record(out: &mut Vec<u8>, stream: LogStream, partial: bool, text: &[u8]) {
    out.extend_from_slice(format_rfc3339_nano(SystemTime::now()).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// One parsed CRI record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub time: SystemTime,
    pub stream: LogStream,
    pub partial: bool,
    pub text: Vec<u8>,
}

/// Parses one line (without its newline); `None` for a malformed line, which readers skip.
pub fn parse_record(line: &[u8]) -> Option<LogRecord> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = parse_rfc3339(std::str::from_utf8(parts.next()?).ok()?)?;
    let stream = match parts.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    // The tag may carry more fields after ':' (CRI allows it); the first says full or partial.
    let tag = parts.next()?;
    let partial = match tag.split(|&b| b == b':').next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let text = parts.next().unwrap_or_default().to_vec();
    Some(LogRecord { time, stream, partial, text })
}

/// `kubectl logs` options, as the kubelet takes them.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep reading as the file grows until the stop signal.
    pub follow: bool,
    /// Only the last N lines (whole lines: `P` chunks count with the line they belong to).
    pub tail_lines: Option<u64>,
    /// Prefix every line with its RFC3339Nano time.
    pub timestamps: bool,
    /// Skip lines older than this.
    pub since_time: Option<SystemTime>,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

/// How often a following reader looks for new data.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Streams a CRI log as the text `kubectl logs` prints. `stop` turning `true` (or its sender going
/// away) ends a follow once the file is read to its end, e.g. when the container exited.
/// A missing file is an error up front; errors while streaming end the stream.
pub async fn read_logs(
    path: impl Into<PathBuf>,
    opts: LogOptions,
    stop: watch::Receiver<bool>,
) -> Result<impl Stream<Item = Bytes> + Send + 'static, LogsError> {
    let path = path.into();
    let io_err = |source| LogsError::Io { path: path.clone(), source };
    let mut file = tokio::fs::File::open(&path).await.map_err(io_err)?;
    if let Some(n) = opts.tail_lines {
        let start = tail_offset(&mut file, n).await.map_err(io_err)?;
        file.seek(io::SeekFrom::Start(start)).await.map_err(io_err)?;
    }
    let state = ReadState {
        reader: BufReader::with_capacity(64 * 1024, file),
        line: Vec::new(),
        merged: Vec::new(),
        merged_time: None,
        opts,
        stop,
        sent: 0,
        done: false,
        path,
    };
    Ok(futures::stream::unfold(state, |mut st| async move {
        let out = st.next_chunk().await?;
        Some((out, st))
    }))
}

struct ReadState {
    reader: BufReader<tokio::fs::File>,
    /// A line read so far (a follower can see half a line at the end of the file).
    line: Vec<u8>,
    /// Text of `P` records waiting for their `F`.
    merged: Vec<u8>,
    merged_time: Option<SystemTime>,
    opts: LogOptions,
    stop: watch::Receiver<bool>,
    sent: u64,
    done: bool,
    path: PathBuf,
}

impl ReadState {
    /// The next piece of output; `None` at the end.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = Vec::new();
        loop {
            match self.reader.read_until(b'\n', &mut self.line).await {
                Ok(0) => {
                    if !out.is_empty() {
                        return self.emit(out);
                    }
                    if self.opts.follow && !self.stopped() {
                        // Not at the end for good: wait for the writer or the stop signal.
                        let mut stop = self.stop.clone();
                        tokio::select! {
                            _ = tokio::time::sleep(FOLLOW_POLL) => {}
                            _ = stop.changed() => {}
                        }
                        continue;
                    }
                    // The end: a line without newline or pending P chunks are what the container
                    // printed last, without a newline.
                    let tail = std::mem::take(&mut self.line);
                    if let Some(rec) = parse_record(trim_nl(&tail)) {
                        self.push_record(rec, &mut out);
                    }
                    if !self.merged.is_empty() {
                        let text = std::mem::take(&mut self.merged);
                        let time = self.merged_time.take();
                        self.format(time, &text, false, &mut out);
                    }
                    self.done = true;
                    return if out.is_empty() { None } else { self.emit(out) };
                }
                Ok(_) => {
                    if self.line.last() != Some(&b'\n') {
                        // Half a line at the end of a growing file: read the rest later.
                        continue;
                    }
                    let line = std::mem::take(&mut self.line);
                    if let Some(rec) = parse_record(trim_nl(&line)) {
                        self.push_record(rec, &mut out);
                    }
                    if out.len() >= 32 * 1024 {
                        return self.emit(out);
                    }
                }
                Err(err) => {
                    tracing::warn!(path = %self.path.display(), %err, "reading container log");
                    self.done = true;
                    return if out.is_empty() { None } else { self.emit(out) };
                }
            }
        }
    }

    fn stopped(&self) -> bool {
        // A dropped sender counts as stop: nobody will tell us any more.
        *self.stop.borrow() || self.stop.has_changed().is_err()
    }

    fn push_record(&mut self, rec: LogRecord, out: &mut Vec<u8>) {
        if rec.partial {
            if self.merged_time.is_none() {
                self.merged_time = Some(rec.time);
            }
            self.merged.extend_from_slice(&rec.text);
            return;
        }
        let time = self.merged_time.take().unwrap_or(rec.time);
        let mut text = std::mem::take(&mut self.merged);
        text.extend_from_slice(&rec.text);
        self.format(Some(time), &text, true, out);
    }

    fn format(&self, time: Option<SystemTime>, text: &[u8], newline: bool, out: &mut Vec<u8>) {
        if let (Some(since), Some(t)) = (self.opts.since_time, time) {
            if t < since {
                return;
            }
        }
        if self.opts.timestamps {
            if let Some(t) = time {
                out.extend_from_slice(format_rfc3339_nano(t).as_bytes());
                out.push(b' ');
            }
        }
        out.extend_from_slice(text);
        if newline {
            out.push(b'\n');
        }
    }

    /// Applies `limit_bytes` and hands out a chunk.
    fn emit(&mut self, mut out: Vec<u8>) -> Option<Bytes> {
        if let Some(limit) = self.opts.limit_bytes {
            let left = limit.saturating_sub(self.sent);
            if (out.len() as u64) >= left {
                out.truncate(left as usize);
                self.done = true;
            }
        }
        self.sent += out.len() as u64;
        if out.is_empty() {
            None
        } else {
            Some(Bytes::from(out))
        }
    }
}

fn trim_nl(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// Offset of the first record of the last `n` whole lines, found by reading backwards in blocks.
async fn tail_offset(file: &mut tokio::fs::File, n: u64) -> io::Result<u64> {
    const BLOCK: u64 = 64 * 1024;
    let len = file.metadata().await?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut full_lines = 0u64;
    // Bytes of the (incomplete) first line of the region scanned so far, carried to the next block.
    let mut carry: Vec<u8> = Vec::new();
    let mut pos = len;
    while pos > 0 {
        let start = pos.saturating_sub(BLOCK);
        let mut block = vec![0u8; (pos - start) as usize];
        file.seek(io::SeekFrom::Start(start)).await?;
        file.read_exact(&mut block).await?;
        block.extend_from_slice(&carry);
        // Walk the lines of `block` from the end; the first one may continue in the previous block.
        let mut end = block.len();
        loop {
            let search_end = if end > 0 && block[end - 1] == b'\n' { end - 1 } else { end };
            match block[..search_end].iter().rposition(|&b| b == b'\n') {
                Some(nl) => {
                    // `block` is the file from `start` on, so an index is an offset from `start`.
                    if let Some(rec) = parse_record(trim_nl(&block[nl + 1..end])) {
                        if !rec.partial {
                            if full_lines == n {
                                // This F line ends a line we do not want: start after it.
                                return Ok(start + end as u64);
                            }
                            full_lines += 1;
                        }
                    }
                    end = nl + 1;
                }
                None => break,
            }
        }
        carry = block[..end].to_vec();
        pos = start;
    }
    // The file's first line.
    if let Some(rec) = parse_record(trim_nl(&carry)) {
        if !rec.partial && full_lines == n {
            return Ok(carry.len() as u64);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn tmpfile(name: &str) -> PathBuf {
        let mut b = [0u8; 6];
        File::open("/dev/urandom").and_then(|mut f| io::Read::read_exact(&mut f, &mut b)).unwrap();
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        std::env::temp_dir().join(format!("kubus-logs-{hex}-{name}"))
    }

    struct Rm(PathBuf);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn records(path: &Path) -> Vec<LogRecord> {
        std::fs::read(path)
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| parse_record(l).unwrap())
            .collect()
    }

    #[test]
    fn writer_frames_lines_and_partials() {
        let path = tmpfile("w.log");
        let _rm = Rm(path.clone());
        let mut w = CriLogWriter::open(&path).unwrap();
        w.write(LogStream::Stdout, b"hel").unwrap();
        w.write(LogStream::Stderr, b"oops\n").unwrap();
        w.write(LogStream::Stdout, b"lo\nworld\n\nlast").unwrap();
        let long = vec![b'x'; MAX_RECORD + 10];
        w.write(LogStream::Stderr, &long).unwrap();
        w.write(LogStream::Stderr, b"\n").unwrap();
        w.finish(LogStream::Stdout).unwrap();
        w.finish(LogStream::Stderr).unwrap();
        let recs = records(&path);
        let got: Vec<(LogStream, bool, Vec<u8>)> = recs.iter().map(|r| (r.stream, r.partial, r.text.clone())).collect();
        assert_eq!(
            got,
            vec![
                (LogStream::Stderr, false, b"oops".to_vec()),
                (LogStream::Stdout, false, b"hello".to_vec()),
                (LogStream::Stdout, false, b"world".to_vec()),
                (LogStream::Stdout, false, b"".to_vec()),
                (LogStream::Stderr, true, vec![b'x'; MAX_RECORD]),
                (LogStream::Stderr, false, vec![b'x'; 10]),
                (LogStream::Stdout, true, b"last".to_vec()),
            ]
        );
        // Format check of a raw line.
        let raw = std::fs::read_to_string(&path).unwrap();
        let first = raw.lines().next().unwrap();
        let parts: Vec<&str> = first.splitn(4, ' ').collect();
        assert!(parts[0].ends_with('Z') && parts[0].contains('T'), "{first}");
        assert_eq!(&parts[1..], &["stderr", "F", "oops"]);
    }

    fn write_lines(path: &Path, lines: &[(&str, &str, &str, &str)]) {
        let mut s = String::new();
        for (t, st, tag, text) in lines {
            s.push_str(&format!("{t} {st} {tag} {text}\n"));
        }
        std::fs::write(path, s).unwrap();
    }

    async fn collect(path: &Path, opts: LogOptions) -> String {
        let (_tx, rx) = watch::channel(true);
        let s = read_logs(path, opts, rx).await.unwrap();
        let chunks: Vec<Bytes> = s.collect().await;
        String::from_utf8(chunks.concat()).unwrap()
    }

    #[tokio::test]
    async fn reader_merges_tails_filters() {
        let path = tmpfile("r.log");
        let _rm = Rm(path.clone());
        write_lines(
            &path,
            &[
                ("2024-01-01T00:00:01Z", "stdout", "F", "one"),
                ("2024-01-01T00:00:02Z", "stderr", "P", "tw"),
                ("2024-01-01T00:00:03Z", "stderr", "F", "o"),
                ("garbage", "x", "y", "z"),
                ("2024-01-01T00:00:04.5Z", "stdout", "F", "three"),
                ("2024-01-01T00:00:05Z", "stdout", "P", "four-no-newline"),
            ],
        );
        assert_eq!(collect(&path, LogOptions::default()).await, "one\ntwo\nthree\nfour-no-newline");
        let tail = |n| LogOptions { tail_lines: Some(n), ..Default::default() };
        assert_eq!(collect(&path, tail(1)).await, "three\nfour-no-newline");
        assert_eq!(collect(&path, tail(2)).await, "two\nthree\nfour-no-newline");
        assert_eq!(collect(&path, tail(3)).await, "one\ntwo\nthree\nfour-no-newline");
        assert_eq!(collect(&path, tail(10)).await, "one\ntwo\nthree\nfour-no-newline");
        assert_eq!(collect(&path, tail(0)).await, "");
        let ts = LogOptions { timestamps: true, tail_lines: Some(2), ..Default::default() };
        assert_eq!(
            collect(&path, ts).await,
            "2024-01-01T00:00:02Z two\n2024-01-01T00:00:04.5Z three\n2024-01-01T00:00:05Z four-no-newline"
        );
        let since = LogOptions { since_time: parse_rfc3339("2024-01-01T00:00:02Z"), ..Default::default() };
        assert_eq!(collect(&path, since).await, "two\nthree\nfour-no-newline");
        let limit = LogOptions { limit_bytes: Some(6), ..Default::default() };
        assert_eq!(collect(&path, limit).await, "one\ntw");
    }

    #[tokio::test]
    async fn tail_across_blocks() {
        let path = tmpfile("big.log");
        let _rm = Rm(path.clone());
        let mut w = CriLogWriter::open(&path).unwrap();
        for i in 0..5000 {
            w.write(LogStream::Stdout, format!("line {i:05} {}\n", "y".repeat(40)).as_bytes()).unwrap();
        }
        drop(w);
        let out = collect(&path, LogOptions { tail_lines: Some(3000), ..Default::default() }).await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3000);
        assert!(lines[0].starts_with("line 02000 "), "{}", lines[0]);
        assert!(lines[2999].starts_with("line 04999 "));
    }

    #[tokio::test]
    async fn follow_until_stopped() {
        let path = tmpfile("f.log");
        let _rm = Rm(path.clone());
        let mut w = CriLogWriter::open(&path).unwrap();
        w.write(LogStream::Stdout, b"first\n").unwrap();
        let (tx, rx) = watch::channel(false);
        let mut s = Box::pin(read_logs(&path, LogOptions { follow: true, ..Default::default() }, rx).await.unwrap());
        assert_eq!(s.next().await.unwrap(), Bytes::from_static(b"first\n"));
        w.write(LogStream::Stdout, b"second\n").unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), s.next()).await.unwrap();
        assert_eq!(next.unwrap(), Bytes::from_static(b"second\n"));
        // Written before the stop: still delivered, then the stream ends.
        w.write(LogStream::Stdout, b"third").unwrap();
        w.finish(LogStream::Stdout).unwrap();
        tx.send(true).unwrap();
        let rest: Vec<Bytes> = tokio::time::timeout(Duration::from_secs(5), s.collect()).await.unwrap();
        assert_eq!(rest.concat(), b"third");
    }
}
