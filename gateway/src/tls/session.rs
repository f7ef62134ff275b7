//! An established client TLS session: the record layer after the handshake, run by the
//! gateway itself over the session keys rustls negotiated.
//!
//! rustls does the handshake (client certificate, tickets, every negotiation decision); then
//! [`crate::tls::handshake`] takes the traffic keys out through rustls' kernel-TLS interface
//! (`dangerous_into_kernel_connection`), and records are sealed and opened here
//! ([`crate::tls::seal`], [`crate::tls::open`]) with the provider's AEAD and the nonces and
//! additional data rustls itself uses. rustls keeps only what a TLS 1.3 key update needs
//! ([`KernelConnection`]). While the connection is parked, the AEAD contexts are dropped
//! too ([`TlsSession::park_keys`]).
//!
//! What that buys (issue #12): buffers exist only while bytes are in flight, so an idle
//! connection holds no read buffer (rustls keeps 4 KiB per connection for good, plus its
//! connection state); a streaming read takes up to [`READ_MAX`] per system call; and the
//! handshake's last flight (the TLS 1.3 ticket) goes out with the first response instead of
//! in a system call of its own.
//!
//! The protocol rules kept here (RFC 8446 5 and 4.6.3, RFC 5246 6.2): records are at most
//! 2^14 bytes of plaintext (2^14 + 256 of TLS 1.3 ciphertext, 2^14 + 2048 of TLS 1.2);
//! TLS 1.3 accepts only application_data records on the wire; a TLS 1.3 KeyUpdate must end
//! its record and is answered when asked; close_notify ends reading; any other alert (bar
//! TLS 1.3 user_canceled and TLS 1.2 warnings) is fatal; renegotiation, change_cipher_spec and
//! other post-handshake messages are refused; sequence numbers never wrap, and the sending
//! key is renewed (TLS 1.3) or the connection refused (TLS 1.2) at the suite's
//! confidentiality limit. A fatal error sends its alert (best effort) and ends the session.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use rustls::crypto::cipher::OutboundChunks;
use rustls::kernel::KernelConnection;
use rustls::server::ServerConnectionData;
use rustls::{
    AlertDescription, ConnectionTrafficSecrets, ContentType, Error, PeerMisbehaved,
    ProtocolVersion, SupportedCipherSuite,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::open::Opener;
use super::seal::Sealer;

/// Record header: type, version, length.
const HEADER: usize = 5;
/// Most plaintext in one record.
const MAX_PLAIN: usize = 1 << 14;
/// Most ciphertext in one TLS 1.3 record.
const MAX_CIPHER_TLS13: usize = MAX_PLAIN + 256;
/// Most ciphertext in one TLS 1.2 record.
const MAX_CIPHER_TLS12: usize = MAX_PLAIN + 2048;
/// Free room asked of the read buffer before a read: one whole record.
const READ_MIN: usize = HEADER + MAX_CIPHER_TLS13;
/// Room for a streaming read (the previous read filled all it was given).
const READ_MAX: usize = 64 * 1024;
/// Queued ciphertext beyond which writes wait for the socket.
const WRITE_HIGH: usize = 64 * 1024;
/// Queued ciphertext beyond which a peer that sends but never reads is refused (our
/// answers to its key updates would otherwise pile up).
const WRITE_MAX: usize = 4 * WRITE_HIGH;
/// Empty application-data records (or TLS 1.2 warning alerts) in a row before the peer is
/// refused: they cost a decryption each and carry nothing.
const MAX_EMPTY_RUN: u8 = 32;
/// Ciphertext buffers queued for one `writev`.
const MAX_IOVECS: usize = 32;

/// Why a session failed: what is logged, and the alert sent.
fn alert_for(e: &Error) -> AlertDescription {
    match e {
        Error::DecryptError => AlertDescription::BadRecordMac,
        Error::PeerSentOversizedRecord => AlertDescription::RecordOverflow,
        Error::InvalidMessage(_) => AlertDescription::DecodeError,
        Error::AlertReceived(_) => AlertDescription::CloseNotify,
        Error::EncryptError | Error::General(_) => AlertDescription::InternalError,
        _ => AlertDescription::UnexpectedMessage,
    }
}

/// The protocol version of an established session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Tls12,
    Tls13,
}

/// Record keys as the session was handed them by the handshake.
pub(crate) struct SessionKeys {
    /// The negotiated suite.
    pub suite: SupportedCipherSuite,
    /// (next sequence number, traffic keys) for sending.
    pub tx: (u64, ConnectionTrafficSecrets),
    /// (next sequence number, traffic keys) for receiving.
    pub rx: (u64, ConnectionTrafficSecrets),
    /// What rustls keeps for TLS 1.3 key updates.
    pub kernel: KernelConnection<ServerConnectionData>,
}

/// An established TLS session over a TCP stream: `AsyncRead` gives the client's plaintext,
/// `AsyncWrite` seals what is written into records (see the module documentation).
pub(crate) struct TlsSession {
    tcp: TcpStream,
    version: Version,
    suite: SupportedCipherSuite,
    rx: Opener,
    tx: Sealer,
    rx_seq: u64,
    tx_seq: u64,
    /// rustls' state for TLS 1.3 key updates (`None` in TLS 1.2, which has none: about
    /// 1.3 KiB per connection, the peer's chain included, not kept).
    kernel: Option<Box<KernelConnection<ServerConnectionData>>>,
    /// Received bytes: `[plain.0, plain.1)` is decrypted plaintext not yet read,
    /// `[rpos, len)` ciphertext not yet opened. Freed whenever both are empty.
    rbuf: Vec<u8>,
    plain: (usize, usize),
    rpos: usize,
    /// The last read filled all the room it had: more is probably waiting.
    streaming: bool,
    /// Sealed records not yet written; the first one from `wpos`.
    wq: VecDeque<Vec<u8>>,
    /// The queue holds the handshake's last flight (the TLS 1.3 ticket), not yet written.
    flight_queued: bool,
    /// Plaintext was handed to the reader: an answer is probably being made, and a queued
    /// flight waits for it rather than taking a system call (and a segment) of its own.
    delivered: bool,
    wpos: usize,
    queued: usize,
    empty_run: u8,
    /// close_notify received.
    read_closed: bool,
    /// close_notify sent (or the session failed).
    write_closed: bool,
    /// A fatal error ended the session.
    failed: bool,
    /// A record that failed to open after plaintext was already handed over: reported
    /// by the next read.
    pending_error: Option<Error>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("version", &self.version)
            .field("suite", &self.suite.suite())
            .field("read_closed", &self.read_closed)
            .field("write_closed", &self.write_closed)
            .finish_non_exhaustive()
    }
}

fn decrypter(
    suite: SupportedCipherSuite,
    secrets: ConnectionTrafficSecrets,
) -> Result<Opener, Error> {
    Opener::new(&secrets, matches!(suite, SupportedCipherSuite::Tls12(_)))
}

fn encrypter(
    suite: SupportedCipherSuite,
    secrets: ConnectionTrafficSecrets,
) -> Result<Sealer, Error> {
    Sealer::new(&secrets, matches!(suite, SupportedCipherSuite::Tls12(_)))
}

fn confidentiality_limit(suite: SupportedCipherSuite) -> u64 {
    match suite {
        SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
        SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
    }
}

fn io_error(e: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsSession {
    /// A session over `tcp` with `keys`; `received` is what the handshake read past its last
    /// message (ciphertext), `early_plain` application data rustls already opened, and
    /// `unsent` the handshake's last flight, sent with the first write (or before the first
    /// wait for the client).
    pub(crate) fn new(
        tcp: TcpStream,
        keys: SessionKeys,
        received: Vec<u8>,
        early_plain: Vec<u8>,
        unsent: Vec<u8>,
        read_closed: bool,
    ) -> Result<Self, (Error, TcpStream)> {
        let version = match keys.kernel.protocol_version() {
            ProtocolVersion::TLSv1_3 => Version::Tls13,
            ProtocolVersion::TLSv1_2 => Version::Tls12,
            _ => {
                return Err((
                    Error::General("session is neither TLS 1.2 nor 1.3".into()),
                    tcp,
                ))
            }
        };
        let suite = keys.suite;
        let rx = match decrypter(suite, keys.rx.1) {
            Ok(k) => k,
            Err(e) => return Err((e, tcp)),
        };
        let tx = match encrypter(suite, keys.tx.1) {
            Ok(k) => k,
            Err(e) => return Err((e, tcp)),
        };
        let (rbuf, plain, rpos) = if early_plain.is_empty() {
            (received, (0, 0), 0)
        } else {
            let n = early_plain.len();
            let mut b = early_plain;
            b.extend_from_slice(&received);
            (b, (0, n), n)
        };
        let mut s = TlsSession {
            tcp,
            version,
            suite,
            rx,
            tx,
            rx_seq: keys.rx.0,
            tx_seq: keys.tx.0,
            kernel: (version == Version::Tls13).then(|| Box::new(keys.kernel)),
            rbuf,
            plain,
            rpos,
            streaming: false,
            wq: VecDeque::new(),
            flight_queued: !unsent.is_empty(),
            delivered: false,
            wpos: 0,
            queued: 0,
            empty_run: 0,
            read_closed,
            write_closed: false,
            failed: false,
            pending_error: None,
        };
        if !unsent.is_empty() {
            s.queued = unsent.len();
            s.wq.push_back(unsent);
        }
        s.release();
        Ok(s)
    }

    /// Drops both directions' AEAD contexts while the connection is idle (parked, see
    /// [`crate::lifetime`]); the next record makes them again.
    pub(crate) fn park_keys(&mut self) {
        self.rx.key.park();
        self.tx.key.park();
    }

    /// Whether both AEAD contexts are dropped.
    #[cfg(test)]
    pub(crate) fn keys_parked(&self) -> bool {
        self.rx.key.is_parked() && self.tx.key.is_parked()
    }

    /// The TCP stream under the session.
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether the session holds no buffer (idle: nothing received unread, nothing unsent).
    #[cfg(test)]
    pub(crate) fn holds_no_buffers(&self) -> bool {
        self.rbuf.capacity() == 0 && self.wq.capacity() == 0
    }

    /// Seals one record of `typ` into the write queue.
    fn seal(&mut self, typ: ContentType, payload: OutboundChunks<'_>) -> Result<(), Error> {
        if self.tx_seq >= confidentiality_limit(self.suite) {
            self.renew_tx_keys(false)?;
        }
        self.queue_record(typ, payload)
    }

    /// Seals one record under the current key and sequence number and queues it.
    fn queue_record(&mut self, typ: ContentType, payload: OutboundChunks<'_>) -> Result<(), Error> {
        let seq = self.tx_seq;
        self.tx_seq = seq.checked_add(1).ok_or(Error::EncryptError)?;
        let rec = self.tx.seal(typ, payload, seq)?;
        self.queued += rec.len();
        self.wq.push_back(rec);
        Ok(())
    }

    /// rustls' key-update state (TLS 1.3 only).
    fn kernel_mut(&mut self) -> Result<&mut KernelConnection<ServerConnectionData>, Error> {
        self.kernel
            .as_deref_mut()
            .ok_or_else(|| Error::General("no key update in TLS 1.2".into()))
    }

    /// TLS 1.3: sends a KeyUpdate under the current key, then switches to the next one.
    /// TLS 1.2 has no key update: the connection ends instead.
    fn renew_tx_keys(&mut self, answering: bool) -> Result<(), Error> {
        if self.version != Version::Tls13 {
            return Err(Error::General(
                "the sending key reached its confidentiality limit".into(),
            ));
        }
        // KeyUpdate { update_not_requested }: type 24, length 1, value 0.
        let msg = [24u8, 0, 0, 1, 0];
        self.queue_record(ContentType::Handshake, OutboundChunks::Single(&msg))?;
        let (seq, secrets) = self.kernel_mut()?.update_tx_secret()?;
        self.tx = encrypter(self.suite, secrets)?;
        self.tx_seq = seq;
        if answering && self.queued > WRITE_MAX {
            return Err(Error::General(
                "the client asks for key updates but does not read the answers".into(),
            ));
        }
        Ok(())
    }

    /// Opens the next complete record of the read buffer, if there is one: `Ok(true)` when
    /// a record was consumed (its plaintext, if any, is then in `plain`).
    fn open_next(&mut self) -> Result<bool, Error> {
        let Some(&[typ, v0, v1, l0, l1]) = self.rbuf.get(self.rpos..self.rpos + HEADER) else {
            return Ok(false);
        };
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let typ = ContentType::from(typ);
        let max = match self.version {
            Version::Tls13 => {
                if typ != ContentType::ApplicationData {
                    return Err(Error::InappropriateMessage {
                        expect_types: vec![ContentType::ApplicationData],
                        got_type: typ,
                    });
                }
                MAX_CIPHER_TLS13
            }
            Version::Tls12 => MAX_CIPHER_TLS12,
        };
        if len > max {
            return Err(Error::PeerSentOversizedRecord);
        }
        if [v0, v1] != [3, 3] {
            return Err(Error::InvalidMessage(
                rustls::InvalidMessage::UnknownProtocolVersion,
            ));
        }
        let start = self.rpos + HEADER;
        let end = start + len;
        if self.rbuf.len() < end {
            return Ok(false);
        }
        self.rpos = end;
        let seq = self.rx_seq;
        self.rx_seq = seq.checked_add(1).ok_or(Error::DecryptError)?;
        let Some(payload) = self.rbuf.get_mut(start..end) else {
            return Ok(false);
        };
        let opened = self.rx.open(typ, payload, seq)?;
        if opened.end - opened.start > MAX_PLAIN {
            return Err(Error::PeerSentOversizedRecord);
        }
        // Opened in place: the plaintext is a part of the record's bytes.
        let range = (start + opened.start, start + opened.end);
        let plain_payload = self.rbuf.get(range.0..range.1).unwrap_or_default();
        match opened.typ {
            ContentType::ApplicationData => {
                if range.0 == range.1 {
                    self.empty_record()?;
                } else {
                    self.empty_run = 0;
                }
                self.plain = range;
            }
            ContentType::Alert => {
                let alert = match plain_payload {
                    &[level, desc] => (level, AlertDescription::from(desc)),
                    _ => {
                        return Err(Error::InvalidMessage(rustls::InvalidMessage::TrailingData(
                            "alert",
                        )))
                    }
                };
                self.on_alert(alert)?;
            }
            ContentType::Handshake => {
                let update = match (self.version, plain_payload) {
                    // A KeyUpdate, alone in its record (RFC 8446 5.1).
                    (Version::Tls13, &[24, 0, 0, 1, requested @ (0 | 1)]) => requested == 1,
                    (Version::Tls12, _) => {
                        return Err(Error::General(
                            "the client asked for renegotiation (refused)".into(),
                        ))
                    }
                    _ => {
                        return Err(Error::General(
                            "unexpected handshake message after the handshake".into(),
                        ))
                    }
                };
                let (seq, secrets) = self.kernel_mut()?.update_rx_secret()?;
                self.rx = decrypter(self.suite, secrets)?;
                self.rx_seq = seq;
                if update {
                    self.renew_tx_keys(true)?;
                }
            }
            other => {
                return Err(Error::InappropriateMessage {
                    expect_types: vec![ContentType::ApplicationData],
                    got_type: other,
                })
            }
        }
        Ok(true)
    }

    fn empty_record(&mut self) -> Result<(), Error> {
        self.empty_run += 1;
        if self.empty_run > MAX_EMPTY_RUN {
            return Err(Error::PeerMisbehaved(PeerMisbehaved::TooManyEmptyFragments));
        }
        Ok(())
    }

    fn on_alert(&mut self, (level, desc): (u8, AlertDescription)) -> Result<(), Error> {
        match (self.version, desc, level) {
            (_, AlertDescription::CloseNotify, _) => {
                self.read_closed = true;
                Ok(())
            }
            (Version::Tls13, AlertDescription::UserCanceled, _) | (Version::Tls12, _, 1) => {
                self.empty_record()
            }
            _ => Err(Error::AlertReceived(desc)),
        }
    }

    /// Ends the session after a fatal error: its alert goes out if the socket takes it now.
    fn fail(&mut self, e: Error) -> io::Error {
        if !self.write_closed {
            self.write_closed = true;
            let desc = alert_for(&e);
            if desc != AlertDescription::CloseNotify {
                let alert = [2u8, u8::from(desc)];
                if self
                    .seal(ContentType::Alert, OutboundChunks::Single(&alert))
                    .is_ok()
                {
                    let _ = self.try_write_queue();
                }
            }
        }
        self.failed = true;
        self.release();
        io_error(e)
    }

    /// Frees the read buffer when it holds nothing, and the queue's storage when empty.
    fn release(&mut self) {
        if self.plain.0 == self.plain.1 && self.rpos == self.rbuf.len() {
            self.rbuf = Vec::new();
            self.plain = (0, 0);
            self.rpos = 0;
        }
        if self.wq.is_empty() {
            self.wq = VecDeque::new();
        }
    }

    /// Reads from the socket into the read buffer (after what is there).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.plain.0 == self.plain.1 && self.rpos > 0 {
            // Only the start of a record is left: move it to the front.
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
            self.plain = (0, 0);
        }
        // The buffer is made only once there is something to read: an idle connection
        // waits without one.
        ready!(self.tcp.poll_read_ready(cx))?;
        let room = if self.streaming { READ_MAX } else { READ_MIN };
        if self.rbuf.capacity() - self.rbuf.len() < room {
            self.rbuf.reserve_exact(room);
        }
        let len = self.rbuf.len();
        let mut spare = ReadBuf::uninit(self.rbuf.spare_capacity_mut());
        // `poll_read`, not `try_read`: tokio takes a short read as proof that the socket is
        // drained, so the next wait costs no system call that returns EAGAIN.
        match Pin::new(&mut self.tcp).poll_read(cx, &mut spare) {
            Poll::Ready(Ok(())) => {
                let n = spare.filled().len();
                self.streaming = n == spare.capacity();
                // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity
                // (what `filled` covers), right after the `len` bytes already there.
                unsafe { self.rbuf.set_len(len + n) };
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if self.rbuf.is_empty() {
                    self.rbuf = Vec::new();
                }
                Poll::Pending
            }
        }
    }

    /// Writes queued records until the queue is empty or the socket is full.
    fn poll_write_queue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.drain_queue(|tcp, iov| Pin::new(tcp).poll_write_vectored(cx, iov))
    }

    /// As [`Self::poll_write_queue`], without registering for writability (what the
    /// socket takes now).
    fn try_write_queue(&mut self) -> io::Result<()> {
        match self.drain_queue(|tcp, iov| match tcp.try_write_vectored(iov) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            r => Poll::Ready(r),
        }) {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(()),
        }
    }

    /// Hands the queue to `write` (one `writev` of up to [`MAX_IOVECS`] records at a time)
    /// until it is empty or `write` is pending.
    fn drain_queue(
        &mut self,
        mut write: impl FnMut(&mut TcpStream, &[IoSlice<'_>]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<()>> {
        while !self.wq.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
            let mut k = 0;
            for (i, rec) in self.wq.iter().take(MAX_IOVECS).enumerate() {
                let from = if i == 0 { self.wpos } else { 0 };
                if let (Some(slot), Some(bytes)) = (iov.get_mut(i), rec.get(from..)) {
                    *slot = IoSlice::new(bytes);
                    k = i + 1;
                }
            }
            let n = ready!(write(&mut self.tcp, iov.get(..k).unwrap_or_default()))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.queued -= n;
            let mut n = n;
            while n > 0 {
                let Some(front) = self.wq.front() else { break };
                let left = front.len() - self.wpos;
                if n >= left {
                    n -= left;
                    self.wq.pop_front();
                    self.wpos = 0;
                } else {
                    self.wpos += n;
                    n = 0;
                }
            }
        }
        self.wq = VecDeque::new();
        self.flight_queued = false;
        Poll::Ready(Ok(()))
    }

    /// Makes room in the write queue: `Pending` while less than a record's worth of the
    /// [`WRITE_HIGH`] budget is free.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.failed || self.write_closed {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the TLS session is closed for writing",
            )));
        }
        // Room for at least one full record, so bulk data goes out in full records.
        if self.queued > WRITE_HIGH - MAX_PLAIN {
            if let Poll::Ready(Err(e)) = self.poll_write_queue(cx) {
                return Poll::Ready(Err(e));
            }
            if self.queued > WRITE_HIGH - MAX_PLAIN {
                return Poll::Pending;
            }
        }
        Poll::Ready(Ok(WRITE_HIGH - self.queued))
    }

    /// Seals `payload` (at most the room [`Self::poll_room`] gave) in records of at most
    /// [`MAX_PLAIN`], then writes what the socket takes now.
    fn write_records(
        &mut self,
        cx: &mut Context<'_>,
        payload: OutboundChunks<'_>,
    ) -> io::Result<()> {
        let mut rest = payload;
        while !rest.is_empty() {
            let (rec, tail) = rest.split_at(MAX_PLAIN);
            if let Err(e) = self.seal(ContentType::ApplicationData, rec) {
                return Err(self.fail(e));
            }
            rest = tail;
        }
        match self.poll_write_queue(cx) {
            Poll::Ready(Err(e)) => Err(e),
            _ => Ok(()),
        }
    }
}

impl AsyncRead for TlsSession {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.failed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the TLS session failed",
                )));
            }
            let (from, to) = this.plain;
            if from < to {
                let n = (to - from).min(buf.remaining());
                if let Some(bytes) = this.rbuf.get(from..from + n) {
                    buf.put_slice(bytes);
                }
                this.plain.0 += n;
                // Fill the caller's buffer from the records already received (fewer, larger
                // reads up the stack); a failure waits for the next call.
                while buf.remaining() > 0 && this.plain.0 == this.plain.1 && !this.read_closed {
                    match this.open_next() {
                        Ok(true) => {
                            let (from, to) = this.plain;
                            let n = (to - from).min(buf.remaining());
                            if let Some(bytes) = this.rbuf.get(from..from + n) {
                                buf.put_slice(bytes);
                            }
                            this.plain.0 += n;
                        }
                        Ok(false) => break,
                        Err(e) => {
                            this.pending_error = Some(e);
                            break;
                        }
                    }
                }
                this.delivered = true;
                this.release();
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = this.pending_error.take() {
                return Poll::Ready(Err(this.fail(e)));
            }
            if this.read_closed {
                this.release();
                return Poll::Ready(Ok(()));
            }
            match this.open_next() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Poll::Ready(Err(this.fail(e))),
            }
            // Nothing is left unsent while we wait for the client: the answer to a key
            // update goes now, the handshake's last flight (the TLS 1.3 ticket) when the
            // read finds nothing (below). Without registering for writability: a writer
            // waiting for room (another task, when the session is split) keeps its waker.
            if !this.wq.is_empty() && !this.flight_queued {
                if let Err(e) = this.try_write_queue() {
                    return Poll::Ready(Err(e));
                }
            }
            let filled = match this.poll_fill(cx) {
                Poll::Ready(r) => r?,
                Poll::Pending => {
                    // The flight waits for the answer (the next write, flush or shutdown:
                    // one segment less per connection) once the client's data was handed
                    // over; before that, it goes before the wait.
                    if !this.wq.is_empty() && !this.delivered {
                        if let Err(e) = this.try_write_queue() {
                            return Poll::Ready(Err(e));
                        }
                    }
                    return Poll::Pending;
                }
            };
            if filled == 0 {
                this.failed = true;
                this.release();
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                )));
            }
        }
    }
}

impl AsyncWrite for TlsSession {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let room = ready!(this.poll_room(cx))?;
        let n = buf.len().min(room);
        let chunk = buf.get(..n).unwrap_or(buf);
        this.write_records(cx, OutboundChunks::Single(chunk))?;
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut slices: [&[u8]; MAX_IOVECS] = [&[]; MAX_IOVECS];
        let mut k = 0;
        for b in bufs.iter().filter(|b| !b.is_empty()) {
            let Some(slot) = slices.get_mut(k) else { break };
            *slot = b;
            k += 1;
        }
        if k == 0 {
            return Poll::Ready(Ok(0));
        }
        let room = ready!(this.poll_room(cx))?;
        let all = OutboundChunks::new(slices.get(..k).unwrap_or(&[]));
        let (take, _) = all.split_at(room);
        let n = take.len();
        this.write_records(cx, take)?;
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_queue(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.write_closed = true;
            // close_notify (a warning alert).
            if let Err(e) = this.seal(ContentType::Alert, OutboundChunks::Single(&[1, 0])) {
                return Poll::Ready(Err(this.fail(e)));
            }
        }
        if !this.wq.is_empty() {
            // With MSG_MORE the kernel holds the last segment back, so the FIN the shutdown
            // sends rides on it: close_notify and FIN in one segment, not two. What does
            // not go now goes below, waiting for room as any write does.
            if let Poll::Ready(Err(e)) =
                this.drain_queue(|tcp, iov| {
                    match socket2::SockRef::from(&*tcp)
                        .send_vectored_with_flags(iov, libc::MSG_MORE | libc::MSG_NOSIGNAL)
                    {
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                        r => Poll::Ready(r),
                    }
                })
            {
                return Poll::Ready(Err(e));
            }
        }
        ready!(this.poll_write_queue(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]
mod tests;
