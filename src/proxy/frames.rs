//! One reader of framed messages from a socket, for both directions of a
//! session and for every wire: it owns the read buffer, asks a protocol's
//! framing where the next message ends, and lets bulk messages too large to
//! buffer stream through in pieces.
//!
//! The reader never copies a message: the caller looks at it in place
//! ([`FrameReader::front`]) and says when it is done with it
//! ([`FrameReader::consume`]). Consumed bytes are dropped only when the
//! caller reads again with [`FrameReader::fill`], so a message in hand stays
//! where it is while more is read behind it ([`FrameReader::read_more`],
//! used while a statement is held).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// How the size of the read buffer starts (it grows to the largest message).
const READ_CHUNK: usize = 64 * 1024;

/// What a protocol's framing found at the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// Not enough bytes to say: read more.
    NeedMore,
    /// A whole message of `len` bytes (header included) is at the front.
    Whole { tag: u8, len: usize },
    /// A message too large to hold: its first `avail` bytes are at the
    /// front and `remaining` more follow on the wire.
    Partial {
        tag: u8,
        avail: usize,
        remaining: usize,
    },
}

/// Where a protocol's messages end (PostgreSQL: tag and length; MySQL:
/// length and sequence, 16 MiB continuations).
pub trait Framing {
    type Error;
    fn next(&self, buf: &[u8]) -> Result<Framed, Self::Error>;
}

/// What is at the front of the buffer, to look at with
/// [`FrameReader::front`] and drop with [`FrameReader::consume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A whole message.
    Whole { tag: u8, len: usize },
    /// Part of a message that streams through: `tag` on its first piece.
    Piece { tag: Option<u8>, len: usize },
}

pub struct FrameReader<F> {
    framing: F,
    buf: BytesMut,
    /// Consumed bytes at the front of `buf`, dropped at the next `fill`.
    pos: usize,
    /// Bytes of a streaming message still to come.
    rest: usize,
}

impl<F: Framing> FrameReader<F> {
    pub fn new(framing: F) -> Self {
        FrameReader {
            framing,
            buf: BytesMut::with_capacity(READ_CHUNK),
            pos: 0,
            rest: 0,
        }
    }

    /// Drops what was consumed and reads more: `Ok(0)` at end of stream.
    /// Cancel-safe (as `read_buf`): nothing is lost if it does not finish.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> std::io::Result<usize> {
        self.buf.advance(self.pos);
        self.pos = 0;
        rd.read_buf(&mut self.buf).await
    }

    /// Reads more behind what is buffered, keeping every position (a
    /// message in hand stays where it is).
    pub async fn read_more<R: AsyncRead + Unpin>(&mut self, rd: &mut R) -> std::io::Result<usize> {
        rd.read_buf(&mut self.buf).await
    }

    /// Bytes held, consumed or not (what a bound on buffering counts).
    /// The framing, to change how the next frames are cut.
    pub fn framing_mut(&mut self) -> &mut F {
        &mut self.framing
    }

    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Inside a message that streams through: nothing may be written to
    /// the peer in between.
    pub fn mid_message(&self) -> bool {
        self.rest > 0
    }

    /// What is at the front, if enough is buffered to say.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, F::Error> {
        let avail = self.buf.len() - self.pos;
        if self.rest > 0 {
            let len = self.rest.min(avail);
            self.rest -= len;
            return Ok((len > 0).then_some(Frame::Piece { tag: None, len }));
        }
        match self.framing.next(&self.buf[self.pos..])? {
            Framed::NeedMore => Ok(None),
            Framed::Whole { tag, len } => Ok(Some(Frame::Whole { tag, len })),
            Framed::Partial {
                tag,
                avail,
                remaining,
            } => {
                self.rest = remaining;
                Ok(Some(Frame::Piece {
                    tag: Some(tag),
                    len: avail,
                }))
            }
        }
    }

    /// The first `len` unconsumed bytes (a frame `next` returned).
    pub fn front(&self, len: usize) -> &[u8] {
        &self.buf[self.pos..self.pos + len]
    }

    /// Done with the frame at the front.
    pub fn consume(&mut self, len: usize) {
        self.pos += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` as the first byte, then `len - 1` bytes; tag `b'D'` streams
    /// above 4 bytes.
    struct Toy;
    impl Framing for Toy {
        type Error = ();
        fn next(&self, buf: &[u8]) -> Result<Framed, ()> {
            let Some(&len) = buf.first() else {
                return Ok(Framed::NeedMore);
            };
            let len = usize::from(len);
            if len == 0 {
                return Err(());
            }
            if buf.len() >= len {
                Ok(Framed::Whole { tag: b'x', len })
            } else if len > 4 {
                Ok(Framed::Partial {
                    tag: b'D',
                    avail: buf.len(),
                    remaining: len - buf.len(),
                })
            } else {
                Ok(Framed::NeedMore)
            }
        }
    }

    async fn frames(input: &[&[u8]]) -> Vec<(Frame, Vec<u8>)> {
        let mut r = FrameReader::new(Toy);
        let mut out = Vec::new();
        for chunk in input {
            let mut rd: &[u8] = chunk;
            while r.fill(&mut rd).await.unwrap() > 0 {
                while let Some(f) = r.next_frame().unwrap() {
                    let len = match f {
                        Frame::Whole { len, .. } | Frame::Piece { len, .. } => len,
                    };
                    out.push((f, r.front(len).to_vec()));
                    r.consume(len);
                }
            }
        }
        out
    }

    #[tokio::test]
    async fn whole_messages_across_reads() {
        let got = frames(&[&[3, 1], &[2, 2, 9], &[]]).await;
        assert_eq!(
            got,
            [
                (Frame::Whole { tag: b'x', len: 3 }, vec![3, 1, 2]),
                (Frame::Whole { tag: b'x', len: 2 }, vec![2, 9]),
            ]
        );
    }

    #[tokio::test]
    async fn a_large_message_streams_in_pieces_then_framing_resumes() {
        let got = frames(&[&[8, 1, 2], &[3, 4, 5], &[6, 7, 2, 0]]).await;
        assert_eq!(
            got,
            [
                (
                    Frame::Piece {
                        tag: Some(b'D'),
                        len: 3
                    },
                    vec![8, 1, 2]
                ),
                (Frame::Piece { tag: None, len: 3 }, vec![3, 4, 5]),
                (Frame::Piece { tag: None, len: 2 }, vec![6, 7]),
                (Frame::Whole { tag: b'x', len: 2 }, vec![2, 0]),
            ]
        );
    }

    #[tokio::test]
    async fn a_message_in_hand_stays_put_while_more_is_read() {
        let mut r = FrameReader::new(Toy);
        let mut rd: &[u8] = &[2, 7];
        r.fill(&mut rd).await.unwrap();
        let Some(Frame::Whole { len, .. }) = r.next_frame().unwrap() else {
            panic!()
        };
        let mut more: &[u8] = &[2, 8];
        r.read_more(&mut more).await.unwrap();
        assert_eq!(r.front(len), [2, 7]);
        r.consume(len);
        assert_eq!(
            r.next_frame().unwrap(),
            Some(Frame::Whole { tag: b'x', len: 2 })
        );
        assert_eq!(r.front(2), [2, 8]);
        assert_eq!(r.held(), 4);
    }

    #[tokio::test]
    async fn framing_errors_are_the_callers() {
        let mut r = FrameReader::new(Toy);
        let mut rd: &[u8] = &[0];
        r.fill(&mut rd).await.unwrap();
        assert_eq!(r.next_frame(), Err(()));
    }
}
