//! An in-process SOCKS5 relay for rskafka's broker connections, so that
//! Kafka acks are not held back by Nagle's algorithm.
//!
//! rskafka writes each request as two writes (the 4-byte length, then the
//! body) on a socket without `TCP_NODELAY`, and gives no way to set it. With
//! Nagle on, the body waits until the broker ACKs the length, and the broker
//! delays that ACK (up to ~40 ms) hoping to piggyback it on a reply that
//! cannot come before the body. Every produce request, and so every ack of
//! a send, stalls.
//!
//! rskafka can route its connections through a SOCKS5 proxy. We give it one
//! on loopback, in this process: its side of each connection re-arms
//! `TCP_QUICKACK` after every read and write, so rskafka's kernel sees the
//! length ACKed at once and sends the body; the side towards the broker has
//! `TCP_NODELAY`. The relay only copies bytes; it understands nothing of
//! Kafka. It accepts CONNECT without authentication, from loopback only
//! (it listens on 127.0.0.1), and stops with the log's shutdown token.

use std::{
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, RawFd},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

const SOCKS_VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const CONNECT: u8 = 1;
const REPLY_OK: u8 = 0;
const REPLY_HOST_UNREACHABLE: u8 = 4;
const REPLY_COMMAND_NOT_SUPPORTED: u8 = 7;
const REPLY_ADDRESS_NOT_SUPPORTED: u8 = 8;
/// Copy buffer per direction per connection (rskafka holds a dozen or so).
const BUFFER: usize = 64 * 1024;

/// A running relay; its address is what rskafka's `socks5_proxy` takes.
pub struct NoDelayRelay {
    addr: SocketAddr,
}

impl NoDelayRelay {
    /// Listens on an ephemeral loopback port until `shutdown`.
    pub async fn start(shutdown: CancellationToken) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((client, _)) => {
                        let shutdown = shutdown.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = shutdown.cancelled() => {}
                                r = relay(client) => if let Err(e) = r {
                                    tracing::debug!("kafka relay connection ended: {e}");
                                },
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors, most likely: wait a little.
                        tracing::warn!("kafka relay cannot accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(Self { addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn protocol_error(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("socks5: {what}"))
}

/// Answers a CONNECT request with `code` (bound address left as 0.0.0.0:0).
async fn reply(client: &mut TcpStream, code: u8) -> std::io::Result<()> {
    client.write_all(&[SOCKS_VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0]).await
}

/// Reads the CONNECT target: `host:port`.
async fn read_target(client: &mut TcpStream) -> std::io::Result<Result<String, u8>> {
    let mut head = [0u8; 4]; // version, command, reserved, address type
    client.read_exact(&mut head).await?;
    if head[0] != SOCKS_VERSION {
        return Err(protocol_error("bad request version"));
    }
    let host = match head[3] {
        1 => {
            let mut a = [0u8; 4];
            client.read_exact(&mut a).await?;
            Ipv4Addr::from(a).to_string()
        }
        3 => {
            let len = client.read_u8().await? as usize;
            let mut name = vec![0u8; len];
            client.read_exact(&mut name).await?;
            String::from_utf8(name).map_err(|_| protocol_error("host name is not UTF-8"))?
        }
        4 => {
            let mut a = [0u8; 16];
            client.read_exact(&mut a).await?;
            format!("[{}]", Ipv6Addr::from(a))
        }
        _ => return Ok(Err(REPLY_ADDRESS_NOT_SUPPORTED)),
    };
    let port = client.read_u16().await?;
    if head[1] != CONNECT {
        return Ok(Err(REPLY_COMMAND_NOT_SUPPORTED));
    }
    Ok(Ok(format!("{host}:{port}")))
}

async fn relay(mut client: TcpStream) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let mut greeting = [0u8; 2]; // version, number of methods
    client.read_exact(&mut greeting).await?;
    if greeting[0] != SOCKS_VERSION {
        return Err(protocol_error("bad greeting version"));
    }
    let mut methods = vec![0u8; greeting[1] as usize];
    client.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTH) {
        client.write_all(&[SOCKS_VERSION, 0xff]).await?;
        return Err(protocol_error("client offers no method without authentication"));
    }
    client.write_all(&[SOCKS_VERSION, NO_AUTH]).await?;
    let target = match read_target(&mut client).await? {
        Ok(t) => t,
        Err(code) => {
            reply(&mut client, code).await?;
            return Err(protocol_error("unsupported request"));
        }
    };
    let upstream = match TcpStream::connect(&target).await {
        Ok(s) => s,
        Err(e) => {
            reply(&mut client, REPLY_HOST_UNREACHABLE).await?;
            return Err(e);
        }
    };
    upstream.set_nodelay(true)?;
    reply(&mut client, REPLY_OK).await?;

    let fd = client.as_raw_fd();
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_broker, mut to_broker) = upstream.into_split();
    let requests = async {
        let mut buf = vec![0u8; BUFFER];
        loop {
            let n = from_client.read(&mut buf).await?;
            quick_ack(fd);
            if n == 0 {
                return to_broker.shutdown().await;
            }
            to_broker.write_all(&buf[..n]).await?;
        }
    };
    let responses = async {
        let mut buf = vec![0u8; BUFFER];
        loop {
            let n = from_broker.read(&mut buf).await?;
            if n == 0 {
                return to_client.shutdown().await;
            }
            to_client.write_all(&buf[..n]).await?;
            // Sending data can put the socket back into delayed-ACK mode.
            quick_ack(fd);
        }
    };
    tokio::try_join!(requests, responses)?;
    Ok(())
}

/// Asks the kernel to ACK what arrives next on `fd` at once. The flag is
/// not sticky (the kernel may return to delayed ACKs), hence the re-arming.
fn quick_ack(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: `fd` is the open socket of a TcpStream whose halves outlive
    // every call (both live until `relay` returns); the option value is a
    // valid c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_QUICKACK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::trace!("TCP_QUICKACK: {}", std::io::Error::last_os_error());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_a_connect_both_ways() {
        let echo = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let shutdown = CancellationToken::new();
        let relay = NoDelayRelay::start(shutdown.clone()).await.unwrap();
        let mut c = TcpStream::connect(relay.addr()).await.unwrap();
        c.write_all(&[5, 1, 0]).await.unwrap();
        let mut answer = [0u8; 2];
        c.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer, [5, 0]);
        let host = b"127.0.0.1";
        let mut req = vec![5, 1, 0, 3, host.len() as u8];
        req.extend_from_slice(host);
        req.extend_from_slice(&echo_addr.port().to_be_bytes());
        c.write_all(&req).await.unwrap();
        let mut rep = [0u8; 10];
        c.read_exact(&mut rep).await.unwrap();
        assert_eq!(rep[1], REPLY_OK);
        c.write_all(b"hello").await.unwrap();
        let mut back = [0u8; 5];
        c.read_exact(&mut back).await.unwrap();
        assert_eq!(&back, b"hello");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn refuses_other_commands_and_unreachable_targets() {
        let relay = NoDelayRelay::start(CancellationToken::new()).await.unwrap();
        for (command, port, want) in [(2u8, 9u16, REPLY_COMMAND_NOT_SUPPORTED), (CONNECT, 1, REPLY_HOST_UNREACHABLE)] {
            let mut c = TcpStream::connect(relay.addr()).await.unwrap();
            c.write_all(&[5, 1, 0]).await.unwrap();
            let mut answer = [0u8; 2];
            c.read_exact(&mut answer).await.unwrap();
            let mut req = vec![5, command, 0, 1, 127, 0, 0, 1];
            req.extend_from_slice(&port.to_be_bytes());
            c.write_all(&req).await.unwrap();
            let mut rep = [0u8; 10];
            c.read_exact(&mut rep).await.unwrap();
            assert_eq!(rep[1], want);
        }
    }
}
