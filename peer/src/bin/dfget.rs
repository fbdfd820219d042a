//! `dfget URL -O FILE`: download through the local peer daemon (P2P), with a progress bar.
//!
//! The daemon fetches and verifies the content into its store; dfget copies it to a
//! temporary name next to FILE and renames it over FILE. The temporary is a hard link to the
//! daemon's content file when both are on one filesystem and the whole content is wanted (as
//! Dragonfly's dfget does: no second copy of the bytes in the page cache and on disk; the
//! daemon re-hashes every piece it reads from disk, so editing FILE in place can never make it
//! serve wrong bytes, it drops and refetches them), otherwise a copy (in the kernel,
//! `copy_file_range`, when nothing needs hashing); `--copy` always copies. `--digest` is
//! checked over the bytes unless the daemon has just checked that very digest. FILE therefore either does not change or holds the whole, verified
//! content: never a part. Like curl, wget and aria2, dfget does not fsync the output unless
//! asked (`--fsync`): on these disks the sync costs as long as the whole download.
//!
//! `--range N-M` (or `N-`) writes exactly those bytes of the content (`M` inclusive, as in
//! HTTP), with the same never-partial rule. Without `--digest` the daemon fetches only the
//! pieces covering the range (each checked against its piece digest); with `--digest` it
//! fetches the whole content, and dfget checks the whole content's digest while writing
//! only the range (a digest of a part cannot be checked).
//!
//! Exit codes: 0 done; 2 bad command line or request (URL, scheme, digest, header, range);
//! 3 the origin has no such content (404) or refused access (401/403); 4 the daemon cannot
//! be reached; 5 the content does not match the digest; 6 no space (store quota or the
//! output's disk); 7 the origin is unreachable or failing; 1 anything else.
#![forbid(unsafe_code)]

use std::process::ExitCode;

#[cfg(madsim)]
fn main() -> ExitCode {
    eprintln!("dfget: this binary does not run under madsim");
    ExitCode::FAILURE
}

#[cfg(not(madsim))]
fn main() -> ExitCode {
    real::main()
}

#[cfg(not(madsim))]
mod real {
    use api::daemon_pb::daemon_client::DaemonClient;
    use api::daemon_pb::{ByteRange, DownloadRequest};
    use indicatif::{ProgressBar, ProgressStyle};
    use peer::storage::Sha256Digest;
    use sha2::{Digest as _, Sha256};
    use std::collections::HashMap;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::path::{Path, PathBuf};
    use std::process::ExitCode;
    use std::time::Instant;
    use tonic::Code;

    const USAGE: &str = "\
usage: dfget URL -O FILE [options]

  -O, --output FILE        where to write the content (replaced only when complete)
  --digest sha256:HEX      the content's digest: checked, and it names the task
  --range N-M | N-         only bytes N to M (inclusive) or N to the end; without --digest
                           only the pieces covering them are fetched
  --tag TAG                partition tasks of one URL (e.g. a build)
  --application NAME       partition tasks by application
  -H, --header 'K: V'      a request header for the origin (repeatable)
  --daemon ADDR            the daemon's local API (default 127.0.0.1:65000)
  --tls-cert FILE --tls-key FILE --tls-ca FILE
                           mutual TLS to a local API beyond loopback (the daemon's [tls]):
                           this client's certificate and key, and the cluster CA
  --tls-server-name NAME   the name the daemon's certificate carries (default: ADDR's host)
  --quiet                  no progress bar
  --rehash                 hash the copy even when the daemon has just checked the digest
  --fsync                  fsync FILE before renaming it into place (survives a power loss)
  --copy                   write a private copy, never a hard link to the daemon's file
";

    struct Args {
        url: String,
        output: PathBuf,
        digest: Option<String>,
        tag: String,
        application: String,
        headers: HashMap<String, String>,
        daemon: String,
        quiet: bool,
        rehash: bool,
        fsync: bool,
        copy: bool,
        range: Option<ByteRange>,
        tls: Option<svc::tls::TlsSection>,
    }

    /// A failure and its exit code.
    struct Fail(u8, String);

    fn parse_args() -> Result<Args, Fail> {
        let usage = |m: String| Fail(2, m);
        let (mut url, mut output, mut digest) = (None, None, None);
        let (mut tag, mut application, mut headers) = (String::new(), String::new(), HashMap::new());
        let (mut daemon, mut quiet, mut range, mut rehash) = ("127.0.0.1:65000".to_string(), false, None, false);
        let (mut fsync, mut copy) = (false, false);
        let (mut tls_cert, mut tls_key, mut tls_ca, mut tls_name) = (None, None, None, None);
        let mut args = std::env::args().skip(1);
        while let Some(a) = args.next() {
            let mut value = |name: &str| args.next().ok_or_else(|| usage(format!("{name} needs a value")));
            match a.as_str() {
                "-O" | "--output" => output = Some(PathBuf::from(value("--output")?)),
                "--digest" => digest = Some(value("--digest")?),
                "--tag" => tag = value("--tag")?,
                "--application" => application = value("--application")?,
                "-H" | "--header" => {
                    let h = value("--header")?;
                    let (k, v) =
                        h.split_once(':').ok_or_else(|| usage(format!("header {h:?} is not 'Name: value'")))?;
                    headers.insert(k.trim().to_string(), v.trim().to_string());
                }
                "--daemon" => daemon = value("--daemon")?,
                "--range" => range = Some(parse_range(&value("--range")?).map_err(usage)?),
                "--quiet" | "-q" => quiet = true,
                "--rehash" => rehash = true,
                "--fsync" => fsync = true,
                "--copy" => copy = true,
                "--tls-cert" => tls_cert = Some(PathBuf::from(value("--tls-cert")?)),
                "--tls-key" => tls_key = Some(PathBuf::from(value("--tls-key")?)),
                "--tls-ca" => tls_ca = Some(PathBuf::from(value("--tls-ca")?)),
                "--tls-server-name" => tls_name = Some(value("--tls-server-name")?),
                "--help" | "-h" => return Err(Fail(0, String::new())),
                s if s.starts_with('-') => return Err(usage(format!("unknown option {s:?}"))),
                s if url.is_none() => url = Some(s.to_string()),
                s => return Err(usage(format!("unexpected argument {s:?}"))),
            }
        }
        let url = url.ok_or_else(|| usage("a URL is required".into()))?;
        let output = output.ok_or_else(|| usage("-O FILE is required".into()))?;
        if let Some(d) = &digest {
            Sha256Digest::from_oci(d).map_err(|e| usage(format!("--digest {d:?}: {e}")))?;
        }
        let tls = match (tls_cert, tls_key, tls_ca) {
            (Some(cert_file), Some(key_file), Some(ca_file)) => {
                Some(svc::tls::TlsSection { cert_file, key_file, ca_file, server_name: tls_name })
            }
            (None, None, None) if tls_name.is_none() => None,
            _ => return Err(usage("--tls-cert, --tls-key and --tls-ca go together".into())),
        };
        Ok(Args { url, output, digest, tag, application, headers, daemon, quiet, range, rehash, fsync, copy, tls })
    }

    /// `N-M` (M inclusive) or `N-`.
    fn parse_range(text: &str) -> Result<ByteRange, String> {
        let bad = || format!("--range {text:?}: expected N-M (bytes N to M, inclusive) or N- (N to the end)");
        let (a, b) = text.trim().split_once('-').ok_or_else(bad)?;
        let number =
            |s: &str| (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten();
        let start = number(a.trim()).ok_or_else(bad)?;
        let end = match b.trim() {
            "" => None,
            m => Some(number(m).ok_or_else(bad)?),
        };
        if end.is_some_and(|e| e < start) {
            return Err(format!("--range {text:?}: the end is before the start"));
        }
        Ok(ByteRange { start, end })
    }

    pub fn main() -> ExitCode {
        let args = match parse_args() {
            Ok(a) => a,
            Err(Fail(0, _)) => {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            Err(Fail(code, m)) => {
                eprintln!("dfget: {m} (dfget --help shows the usage)");
                return ExitCode::from(code);
            }
        };
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("dfget: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        match runtime.block_on(run(args)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(Fail(code, m)) => {
                eprintln!("dfget: {m}");
                ExitCode::from(code)
            }
        }
    }

    fn code_of(code: Code) -> u8 {
        match code {
            Code::InvalidArgument | Code::OutOfRange => 2,
            Code::NotFound | Code::PermissionDenied => 3,
            Code::DataLoss => 5,
            Code::ResourceExhausted => 6,
            Code::Unavailable => 7,
            _ => 1,
        }
    }

    async fn run(args: Args) -> Result<(), Fail> {
        let endpoint = format!("http://{}", args.daemon);
        let unreachable = |e: &dyn std::fmt::Display| {
            Fail(4, format!("cannot reach the peer daemon at {}: {e}; is peerd running?", args.daemon))
        };
        let channel = match &args.tls {
            None => tonic::transport::Endpoint::from_shared(endpoint.clone())
                .map_err(|e| unreachable(&e))?
                .connect()
                .await
                .map_err(|e| unreachable(&e))?,
            Some(section) => {
                let tls = svc::tls::Tls::load(section).map_err(|e| Fail(2, format!("--tls-*: {e}")))?;
                let connector = svc::tls::GrpcConnector::new(tls);
                tonic::transport::Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| unreachable(&e))?
                    .connect_with_connector(connector)
                    .await
                    .map_err(|e| {
                        unreachable(&std::error::Error::source(&e).map_or(e.to_string(), |s| format!("{e}: {s}")))
                    })?
            }
        };
        let mut client = DaemonClient::new(channel);
        let request = DownloadRequest {
            url: args.url.clone(),
            digest: args.digest.clone(),
            tag: args.tag.clone(),
            application: args.application.clone(),
            request_headers: args.headers.clone(),
            range: args.range,
        };
        let mut stream =
            client.download(request).await.map_err(|s| Fail(code_of(s.code()), s.message().to_string()))?.into_inner();
        let bar = if args.quiet { ProgressBar::hidden() } else { ProgressBar::new(0) };
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let started = Instant::now();
        let last = loop {
            match stream.message().await {
                Ok(Some(p)) => {
                    bar.set_length(p.content_length_bytes);
                    bar.set_position(p.finished_bytes);
                    if p.done {
                        break p;
                    }
                }
                Ok(None) => return Err(Fail(1, "the daemon closed the download without a result".into())),
                Err(s) => {
                    bar.abandon();
                    return Err(Fail(code_of(s.code()), s.message().to_string()));
                }
            }
        };
        bar.set_message("copying");
        let (source, output, digest) = (PathBuf::from(&last.content_path), args.output.clone(), args.digest.clone());
        let part = args.range.map(|_| (last.range_offset_bytes, last.range_length_bytes));
        // The daemon checked this very digest over the whole file just now: no second hash
        // of a whole-content copy.
        let checked_by_daemon = !args.rehash
            && part.is_none()
            && digest
                .as_deref()
                .is_some_and(|d| !last.verified_digest.is_empty() && last.verified_digest == d.to_ascii_lowercase());
        let check = if checked_by_daemon { None } else { digest };
        let how = Output { part, fsync: args.fsync, link: !args.copy };
        let copied = tokio::task::spawn_blocking(move || write_output(&source, &output, check.as_deref(), how))
            .await
            .map_err(|e| Fail(1, e.to_string()))?;
        // The daemon holds the task until the stream closes: only now.
        drop(stream);
        bar.finish_and_clear();
        let bytes = copied?;
        if !args.quiet {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            eprintln!(
                "dfget: {} bytes to {} in {:.2} s ({:.1} MB/s; from parents {}, origin {}{})",
                bytes,
                args.output.display(),
                secs,
                bytes as f64 / secs / 1e6,
                last.bytes_from_parents,
                last.bytes_from_origin,
                if last.from_cache { ", local cache" } else { "" }
            );
        }
        Ok(())
    }

    /// How to write the output.
    struct Output {
        /// Only these bytes (offset, length) of the content.
        part: Option<(u64, u64)>,
        fsync: bool,
        /// A hard link to the daemon's file where it can be (whole content only).
        link: bool,
    }

    /// Puts `source` (or its bytes `part` = (offset, length)) under a temporary name beside
    /// `output`, a hard link or a copy, checking `digest` when given; renames it over
    /// `output` only when complete, (with `fsync`) synced and (with `digest`) matching. With
    /// a digest and a part, the whole source is hashed and only the part written.
    fn write_output(source: &Path, output: &Path, digest: Option<&str>, how: Output) -> Result<u64, Fail> {
        let Output { part, fsync, link } = how;
        let dir = match output.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = output.file_name().ok_or_else(|| Fail(2, format!("{} is not a file name", output.display())))?;
        let tmp = dir.join(format!(".{}.dfget-{}", name.to_string_lossy(), std::process::id()));
        let io = |what: &str, path: &Path, e: std::io::Error| {
            let code = if e.raw_os_error() == Some(28) { 6 } else { 1 };
            Fail(code, format!("{what} {}: {e}", path.display()))
        };
        let result = (|| {
            let mut src = std::fs::File::open(source).map_err(|e| io("cannot open", source, e))?;
            let _ = std::fs::remove_file(&tmp);
            // A link fails across filesystems, or when the daemon's file belongs to another
            // user (protected hard links): then a copy.
            if link && part.is_none() && std::fs::hard_link(source, &tmp).is_ok() {
                if let Some(want) = digest {
                    // Hash only: nothing of it is written.
                    copy_hashing(&mut src, source, &mut std::io::sink(), &tmp, (0, 0), want, output, &io)?;
                }
                if fsync {
                    src.sync_all().map_err(|e| io("cannot sync", source, e))?;
                }
                let total = src.metadata().map_err(|e| io("cannot stat", source, e))?.len();
                std::fs::rename(&tmp, output).map_err(|e| io("cannot rename into", output, e))?;
                return Ok(total);
            }
            let mut dst = std::fs::File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
            let (from, to) = part.map_or((0, u64::MAX), |(offset, length)| (offset, offset + length));
            let total = match digest {
                // Nothing to hash: let the kernel copy (copy_file_range; no pass through
                // this process's memory).
                None => {
                    src.seek(SeekFrom::Start(from)).map_err(|e| io("cannot seek in", source, e))?;
                    std::io::copy(&mut (&src).take(to - from), &mut dst).map_err(|e| io("cannot copy into", &tmp, e))?
                }
                Some(digest) => copy_hashing(&mut src, source, &mut dst, &tmp, (from, to), digest, output, &io)?,
            };
            if let Some((_, length)) = part {
                if total != length {
                    return Err(Fail(
                        1,
                        format!("read {total} of the {length} bytes of the range; {} left unchanged", output.display()),
                    ));
                }
            }
            if fsync {
                dst.sync_all().map_err(|e| io("cannot sync", &tmp, e))?;
            }
            std::fs::rename(&tmp, output).map_err(|e| io("cannot rename into", output, e))?;
            Ok(total)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Reads all of `src`, hashing it, and writes its bytes `from..to` to `dst` (`tmp` names
    /// it in errors); fails
    /// (exit 5) when the whole does not match `digest`. Returns the bytes written.
    #[allow(clippy::too_many_arguments)]
    fn copy_hashing(
        src: &mut std::fs::File,
        source: &Path,
        dst: &mut dyn Write,
        tmp: &Path,
        (from, to): (u64, u64),
        digest: &str,
        output: &Path,
        io: &dyn Fn(&str, &Path, std::io::Error) -> Fail,
    ) -> Result<u64, Fail> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let (mut total, mut at) = (0u64, 0u64);
        loop {
            let n = src.read(&mut buf).map_err(|e| io("cannot read", source, e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            let (lo, hi) = (at.max(from), (at + n as u64).min(to));
            if lo < hi {
                let chunk = &buf[(lo - at) as usize..(hi - at) as usize];
                dst.write_all(chunk).map_err(|e| io("cannot write", tmp, e))?;
                total += chunk.len() as u64;
            }
            at += n as u64;
        }
        check_digest(&format!("sha256:{}", hex(&hasher.finalize())), digest, output)?;
        Ok(total)
    }

    fn check_digest(got: &str, want: &str, output: &Path) -> Result<(), Fail> {
        if got == want.to_ascii_lowercase() {
            Ok(())
        } else {
            Err(Fail(5, format!("content has {got}, expected {want}; {} left unchanged", output.display())))
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}
