//! Attach: clients that receive the init's output from now on, may write its stdin (when the
//! container keeps one) and resize its terminal, and get its exit code at the end.

use std::collections::BTreeMap;

use super::conn::{Conn, Mode};
use super::server::Shim;
use super::stdio::{pump_stdin, resize};
use crate::proto::{self, Response, TerminalSize};

/// Output queued for one attached client before it is considered gone.
const ATTACH_MAX_BACKLOG: usize = 16 << 20;

impl Shim {
    pub(super) fn attach(&mut self, cid: u64, stdin: bool) -> Response {
        if self.started_at.is_none() || self.init_exit.is_some() {
            return Response::Error { message: "container is not running".into() };
        }
        if let Some(c) = self.conns.get_mut(&cid) {
            c.mode = Mode::Attach { stdin: stdin && self.init_stdin.is_some() };
        }
        tracing::info!(stdin, "client attached");
        Response::Ok
    }

    /// Output of the init to every attached client. A client that stops reading is cut off
    /// rather than let the shim's memory grow: the log keeps everything anyway.
    pub(super) fn to_attached(conns: &mut BTreeMap<u64, Conn>, channel: u8, data: &[u8]) {
        for c in conns.values_mut().filter(|c| matches!(c.mode, Mode::Attach { .. }) && !c.dead) {
            if c.outbuf.len() > ATTACH_MAX_BACKLOG {
                tracing::warn!("attached client too slow; detaching it");
                c.dead = true;
                continue;
            }
            c.outbuf.extend(proto::stream_frame(channel, data));
            c.flush();
        }
    }

    /// The init's exit code to every attached client, which is then detached.
    pub(super) fn end_attached(&mut self, code: i32) {
        for c in self.conns.values_mut().filter(|c| matches!(c.mode, Mode::Attach { .. })) {
            c.send_status(code);
        }
    }

    pub(super) fn attach_input(&mut self, stdin: bool, channel: u8, data: Vec<u8>) {
        match channel {
            proto::CHANNEL_STDIN if stdin && self.init_stdin.is_some() && !self.init_stdin_close => {
                self.init_stdin_buf.extend_from_slice(&data);
                self.write_init_stdin();
            }
            proto::CHANNEL_RESIZE => {
                if let (Some(tty), Ok(size)) = (&self.init_tty, serde_json::from_slice::<TerminalSize>(&data)) {
                    if let Err(err) = resize(tty, size) {
                        tracing::warn!(%err, "resizing the container's terminal");
                    }
                }
            }
            // Without stdinOnce the stdin stays open for the next attach.
            proto::CHANNEL_CLOSE if stdin && self.record.stdin_once && data.first() == Some(&proto::CHANNEL_STDIN) => {
                self.close_init_stdin();
            }
            _ => {}
        }
    }

    pub(super) fn close_init_stdin(&mut self) {
        if self.init_stdin.is_none() || self.init_stdin_close {
            return;
        }
        self.init_stdin_close = true;
        if self.init_tty.is_some() {
            // A terminal has no half-close: end-of-file is ^D at the start of a line.
            self.init_stdin_buf.push(0x04);
        }
        self.write_init_stdin();
    }

    pub(super) fn write_init_stdin(&mut self) {
        pump_stdin(&mut self.init_stdin, &mut self.init_stdin_buf, self.init_stdin_close);
    }
}
