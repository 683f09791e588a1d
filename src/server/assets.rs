//! The built site's static files (`LEPTOS_SITE_ROOT`): the wasm client, its
//! JS glue, the CSS and `public/` (favicon), served precompressed and with
//! cache headers that fit how each file is named.
//!
//! ## Precompression: at server start, not in cargo-leptos
//!
//! Every compressible file (wasm, js, css, svg, …) gets `.br` and `.gz`
//! siblings, and [`ServeDir`] picks one by the request's `Accept-Encoding`
//! (`precompressed_br().precompressed_gzip()`, which needs only tower-http's
//! `fs` feature). The siblings are written by [`precompress_dir`], which runs
//!
//! * when the server starts ([`Assets::new`] starts it in the background), and
//! * as `charcha precompress [SITE_ROOT]`, which the release Dockerfile runs at
//!   image build time (the image's site directory is read-only at run time).
//!
//! Why not a cargo-leptos step: cargo-leptos 0.3.11 compresses only with
//! `--release --precompress`, so `./dev run`, `./dev watch` and `./dev test`
//! (debug builds) would never have siblings, and `cargo leptos watch`
//! rewrites the CSS (and, on a front-end change, the wasm) without any hook
//! of ours. The server is the one thing every way of building and running
//! the app starts, and it knows which site it serves. Work already done is
//! skipped: a sibling is fresh when it is at least as new as its source.
//!
//! Because watch can replace a file under a running server, every request
//! for a compressible file checks its siblings' freshness first (three
//! `stat`s): a stale or missing sibling is never served, the request gets
//! the identity encoding instead, and the sibling is rewritten in the
//! background. Siblings are written to a temporary name and renamed, so a
//! reader (another server on the same site, as in the browser tests) never
//! sees a half-written one.
//!
//! ## Cache headers
//!
//! * `pkg/` files whose names carry cargo-leptos' content hash
//!   (`charcha.<22 base64url chars>.wasm`, from `hash-files = true`):
//!   `public, max-age=31536000, immutable`. A new build has new names.
//! * `pkg/` files without a hash (`./dev watch` builds them unhashed):
//!   `no-cache`, revalidated with `Last-Modified`.
//! * other public files (favicon): `public, max-age=86400`.
//! * pages (`text/html`): `no-cache` ([`html_no_cache`]); signed-in pages
//!   and API answers get `no-store` from `guard::security_headers`.
//!
//! Compressible files always carry `Vary: Accept-Encoding`, so a shared
//! cache never hands a brotli body to a client that did not ask for one.
//!
//! ## Hashed names
//!
//! cargo-leptos writes `hash.txt` next to the server binary; Leptos'
//! `HydrationScripts` reads it when `LeptosOptions::hash_files` is on. The
//! server turns that on by itself when `hash.txt` names files that exist in
//! the site ([`resolve_hashed_names`]), so the binary works whether or not
//! whoever starts it (cargo-leptos, the browser tests' harness, Docker)
//! sets `LEPTOS_HASH_FILES`, and a stale `hash.txt` left by an earlier
//! build never points pages at files that are gone.

use std::{
    collections::HashMap,
    future::Future,
    io::{self, Write},
    path::{Component, Path, PathBuf},
    pin::Pin,
    sync::{Arc, Mutex, OnceLock},
    time::SystemTime,
};

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use leptos::config::LeptosOptions;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use super::state::AppState;

/// Extensions worth compressing (text and wasm); images and fonts are not.
const COMPRESSIBLE: &[&str] = &["wasm", "js", "mjs", "css", "svg", "json", "txt", "html", "map", "xml"];

/// Files above this size get a faster brotli level: debug wasm builds are
/// tens of MB, and quality 11 on them would hold up a development server's
/// start for a minute. Release wasm (~1 MB) is well below it.
const MAX_QUALITY_LIMIT: u64 = 8 * 1024 * 1024;

pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const REVALIDATE: &str = "no-cache";
/// Non-hashed public files: a day, so a changed favicon shows up soon.
pub const PUBLIC_FILE: &str = "public, max-age=86400";

#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Whether a file's extension is one we compress.
fn compressible(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| COMPRESSIBLE.contains(&e))
}

fn sibling(path: &Path, ext: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Both siblings exist and are at least as new as `source` (modified at `at`).
fn siblings_fresh(source: &Path, at: SystemTime) -> bool {
    ["br", "gz"].iter().all(|ext| modified(&sibling(source, ext)).is_some_and(|m| m >= at))
}

/// What one [`precompress_dir`] pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PrecompressReport {
    /// Files whose siblings were (re)written.
    pub written: usize,
    /// Files whose siblings were already fresh.
    pub fresh: usize,
}

/// Writes missing or stale `.br`/`.gz` siblings for every compressible file
/// under `root`. Blocking: call it from `spawn_blocking` or a CLI.
pub fn precompress_dir(root: &Path) -> Result<PrecompressReport, AssetsError> {
    let mut report = PrecompressReport::default();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| AssetsError::Read { path: dir.clone(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| AssetsError::Read { path: dir.clone(), source })?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|source| AssetsError::Read { path: path.clone(), source })?;
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() && compressible(&path) {
                if precompress_file(&path)? {
                    report.written += 1;
                } else {
                    report.fresh += 1;
                }
            }
        }
    }
    Ok(report)
}

/// Writes `path`'s siblings unless they are fresh. True if it wrote them.
pub fn precompress_file(path: &Path) -> Result<bool, AssetsError> {
    let read_err = |source| AssetsError::Read { path: path.to_path_buf(), source };
    let at = std::fs::metadata(path).and_then(|m| m.modified()).map_err(read_err)?;
    if siblings_fresh(path, at) {
        return Ok(false);
    }
    let data = std::fs::read(path).map_err(read_err)?;
    let quality = if data.len() as u64 > MAX_QUALITY_LIMIT { 5 } else { 11 };
    write_atomically(&sibling(path, "br"), |out| {
        // The size hint lets the encoder size its hash tables for the whole
        // file (as the brotli CLI does when it knows the input's length).
        let params =
            brotli::enc::BrotliEncoderParams { quality, lgwin: 24, size_hint: data.len(), ..Default::default() };
        brotli::BrotliCompress(&mut &data[..], out, &params).map(drop)
    })?;
    write_atomically(&sibling(path, "gz"), |out| {
        let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::best());
        gz.write_all(&data)?;
        gz.finish().map(drop)
    })?;
    Ok(true)
}

/// Writes `dest` through a temporary file in the same directory, renamed
/// into place when complete.
fn write_atomically(dest: &Path, write: impl FnOnce(&mut std::fs::File) -> io::Result<()>) -> Result<(), AssetsError> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}-{n}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let result = std::fs::File::create(&tmp).and_then(|mut f| {
        write(&mut f)?;
        f.sync_all()
    });
    let result = result.and_then(|()| std::fs::rename(&tmp, dest));
    if let Err(source) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(AssetsError::Write { path: dest.to_path_buf(), source });
    }
    Ok(())
}

/// cargo-leptos' content hash in a file name: `stem.<hash>.ext`, the hash
/// being an MD5 in unpadded base64url (22 characters).
pub fn has_content_hash(file_name: &str) -> bool {
    let mut parts = file_name.rsplit('.');
    let (Some(_ext), Some(hash), Some(stem)) = (parts.next(), parts.next(), parts.next()) else { return false };
    !stem.is_empty() && hash.len() == 22 && hash.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The `Cache-Control` of a static file at URL path `path`.
pub fn cache_control(path: &str, pkg_dir: &str) -> &'static str {
    let pkg_dir = pkg_dir.trim_matches('/');
    let in_pkg = path.trim_start_matches('/').strip_prefix(pkg_dir).is_some_and(|rest| rest.starts_with('/'));
    let file_name = path.rsplit('/').next().unwrap_or_default();
    match (in_pkg, has_content_hash(file_name)) {
        (true, true) => IMMUTABLE,
        (true, false) => REVALIDATE,
        (false, _) => PUBLIC_FILE,
    }
}

/// The file under `root` a URL path names, if it is a plain relative path
/// (no `..`, no percent-escapes: our asset names never need them).
fn file_for(root: &Path, url_path: &str) -> Option<PathBuf> {
    let rel = Path::new(url_path.trim_start_matches('/'));
    if url_path.contains(['%', '\\']) || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(root.join(rel))
}

/// The site's static files, precompressed. Cheap to clone.
#[derive(Clone)]
pub struct Assets {
    root: PathBuf,
    pkg_dir: String,
    serve: ServeDir,
    /// Files whose siblings are being (or failed to be) rewritten, with the
    /// source's modification time then: one attempt per version of a file.
    attempts: Arc<Mutex<HashMap<PathBuf, SystemTime>>>,
}

impl Assets {
    /// Serves `options.site_root` and, inside a Tokio runtime, starts
    /// writing the missing siblings in the background (requests meanwhile
    /// get the identity encoding).
    pub fn new(options: &LeptosOptions) -> Self {
        let root = PathBuf::from(options.site_root.as_ref());
        let assets = Self {
            // No index.html or redirect for directories: a path that is not a
            // file falls through to the app's 404 page.
            serve: ServeDir::new(&root).precompressed_br().precompressed_gzip().append_index_html_on_directories(false),
            pkg_dir: options.site_pkg_dir.to_string(),
            root,
            attempts: Arc::default(),
        };
        // One pass per site and process: tests build many routers on one site.
        static STARTED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
        let first = STARTED.lock().is_ok_and(|mut started| {
            let new = !started.contains(&assets.root);
            if new {
                started.push(assets.root.clone());
            }
            new
        });
        if !assets.root.is_dir() {
            tracing::debug!(root = %assets.root.display(), "no built site: nothing to precompress");
        } else if let (true, Ok(rt)) = (first, tokio::runtime::Handle::try_current()) {
            let root = assets.root.clone();
            rt.spawn_blocking(move || match precompress_dir(&root) {
                Ok(r) if r.written > 0 => {
                    tracing::info!(written = r.written, fresh = r.fresh, "precompressed static files (br, gz)")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("static files served uncompressed: {e}"),
            });
        }
        assets
    }

    /// Serves the file a GET or HEAD for `uri` names, or `None` when there
    /// is none (the caller renders its 404 page). Of the request's headers,
    /// only those about encoding, ranges and revalidation are passed on.
    pub async fn serve(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<Response> {
        let path = uri.path();
        let file = file_for(&self.root, path);
        let is_compressible = file.as_deref().is_some_and(compressible);
        let mut inner = Request::new(Body::empty());
        *inner.method_mut() = method.clone();
        *inner.uri_mut() = uri.clone();
        for name in [header::RANGE, header::IF_RANGE, header::IF_MODIFIED_SINCE, header::IF_UNMODIFIED_SINCE] {
            if let Some(v) = headers.get(&name) {
                inner.headers_mut().insert(name, v.clone());
            }
        }
        if is_compressible
            && let Some(file) = &file
            && let Some(v) = headers.get(header::ACCEPT_ENCODING)
            && self.siblings_ready(file).await
        {
            inner.headers_mut().insert(header::ACCEPT_ENCODING, v.clone());
        }
        let mut response = match self.serve.clone().oneshot(inner).await {
            Ok(r) => r.into_response(),
            Err(e) => {
                tracing::warn!("static file {path}: {e}");
                return Some(StatusCode::INTERNAL_SERVER_ERROR.into_response());
            }
        };
        let status = response.status();
        if status == StatusCode::NOT_FOUND || status == StatusCode::METHOD_NOT_ALLOWED {
            return None;
        }
        let h = response.headers_mut();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control(path, &self.pkg_dir)));
        }
        if is_compressible {
            h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        }
        Some(response)
    }

    /// True when `file`'s siblings may be served. When they are missing or
    /// older than the file (watch rebuilt it), starts rewriting them and
    /// answers false, so this request gets the file itself.
    async fn siblings_ready(&self, file: &Path) -> bool {
        let Ok(at) = tokio::fs::metadata(file).await.and_then(|m| m.modified()) else {
            return false;
        };
        let (br, gz) = (sibling(file, "br"), sibling(file, "gz"));
        let fresh = async |p: &Path| tokio::fs::metadata(p).await.and_then(|m| m.modified()).is_ok_and(|m| m >= at);
        if fresh(&br).await && fresh(&gz).await {
            return true;
        }
        let first_attempt = match self.attempts.lock() {
            Ok(mut attempts) => attempts.insert(file.to_path_buf(), at) != Some(at),
            Err(_) => false,
        };
        if first_attempt {
            let file = file.to_path_buf();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = precompress_file(&file) {
                    tracing::warn!("served uncompressed: {e}");
                }
            });
        }
        false
    }
}

/// The router's fallback: a static file of the site, else Leptos' 404 page
/// (which `leptos_axum::file_and_error_handler` renders after its own,
/// now fruitless, file lookup).
pub fn fallback(
    assets: Assets,
) -> impl Fn(State<AppState>, Request) -> Pin<Box<dyn Future<Output = Response> + Send>> + Clone + Send + Sync + 'static
{
    let not_found = leptos_axum::file_and_error_handler::<AppState, _>(crate::app::shell);
    move |State(state): State<AppState>, req: Request| {
        let (assets, not_found) = (assets.clone(), not_found.clone());
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            if let Some(response) = assets.serve(&parts.method, &parts.uri, &parts.headers).await {
                return response;
            }
            let uri = parts.uri.clone();
            not_found(uri, State(state), Request::from_parts(parts, body)).await
        })
    }
}

/// `charcha precompress [SITE_ROOT]`: one [`precompress_dir`] pass over
/// `SITE_ROOT` (default: `LEPTOS_SITE_ROOT` / Leptos' configuration), for
/// images and packages whose site directory the server may not write.
pub fn precompress_cli(dir: Option<&str>) -> std::process::ExitCode {
    let root = match dir {
        Some(d) => PathBuf::from(d),
        None => match leptos::config::get_configuration(None) {
            Ok(conf) => PathBuf::from(conf.leptos_options.site_root.as_ref()),
            Err(e) => {
                eprintln!("charcha precompress: Leptos configuration: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
    };
    match precompress_dir(&root) {
        Ok(r) => {
            println!("{}: {} files compressed (br, gz), {} already fresh", root.display(), r.written, r.fresh);
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("charcha precompress: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `Cache-Control: no-cache` on pages that set none: a page names the
/// current build's hashed assets, so it must be revalidated every time.
pub async fn html_no_cache(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/html"));
    if is_html && !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(REVALIDATE));
    }
    response
}

/// The hashes in cargo-leptos' `hash.txt` (`js: …`, `wasm: …`, `css: …`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HashedNames {
    pub js: String,
    pub wasm: String,
    pub css: Option<String>,
}

impl HashedNames {
    pub fn parse(text: &str) -> Option<Self> {
        let mut names = Self::default();
        for line in text.lines() {
            let Some((kind, hash)) = line.split_once(':') else { continue };
            let hash = hash.trim().to_owned();
            match kind.trim() {
                "js" => names.js = hash,
                "wasm" => names.wasm = hash,
                "css" => names.css = Some(hash),
                _ => {}
            }
        }
        (!names.js.is_empty() && !names.wasm.is_empty()).then_some(names)
    }
}

/// The stylesheet's URL, hashed when the site's files are (set once by
/// [`resolve_hashed_names`]; unhashed otherwise).
static STYLESHEET: OnceLock<String> = OnceLock::new();

/// The stylesheet `<link>`'s `href` for pages of `options`' site.
pub fn stylesheet_href(options: &LeptosOptions) -> String {
    STYLESHEET.get().cloned().unwrap_or_else(|| format!("/{}/{}.css", options.site_pkg_dir, options.output_name))
}

/// Turns `hash_files` on when `hash.txt` (next to this binary, where
/// cargo-leptos writes it and Leptos reads it) names a js and a wasm file
/// that exist in the site, and off otherwise.
pub fn resolve_hashed_names(mut options: LeptosOptions) -> LeptosOptions {
    let hash_file =
        std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(options.hash_file.as_ref())));
    let names = hash_file.as_deref().and_then(|p| std::fs::read_to_string(p).ok()).and_then(|t| HashedNames::parse(&t));
    let pkg = Path::new(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref());
    let name = options.output_name.to_string();
    let exists = |hash: &str, ext: &str| pkg.join(format!("{name}.{hash}.{ext}")).is_file();
    let usable = names.filter(|n| exists(&n.js, "js") && exists(&n.wasm, "wasm"));
    if options.hash_files && usable.is_none() {
        tracing::warn!(
            "LEPTOS_HASH_FILES is on, but no hash.txt next to the binary names this site's files: using plain names"
        );
    }
    options.hash_files = usable.is_some();
    if let Some(css) = usable.and_then(|n| n.css).filter(|h| exists(h, "css")) {
        let _ = STYLESHEET.set(format!("/{}/{name}.{css}.css", options.site_pkg_dir));
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_names_get_immutable_caching() {
        assert!(has_content_hash("charcha.q1w2e3r4t5y6u7i8o9p0aZ.wasm"));
        assert!(has_content_hash("charcha.q1w2e3r4t5y6u7i8o9p0-_.css"));
        assert!(!has_content_hash("charcha.wasm"));
        assert!(!has_content_hash("charcha_bg.wasm"));
        assert!(!has_content_hash(".q1w2e3r4t5y6u7i8o9p0aZ.wasm"));
        assert_eq!(cache_control("/pkg/charcha.q1w2e3r4t5y6u7i8o9p0aZ.wasm", "pkg"), IMMUTABLE);
        assert_eq!(cache_control("/pkg/charcha.wasm", "pkg"), REVALIDATE);
        assert_eq!(cache_control("/favicon.svg", "pkg"), PUBLIC_FILE);
        assert_eq!(cache_control("/pkgx/charcha.q1w2e3r4t5y6u7i8o9p0aZ.wasm", "pkg"), PUBLIC_FILE);
    }

    #[test]
    fn hash_txt_is_parsed() {
        let names = HashedNames::parse("js: AAA\nwasm: BBB\ncss: CCC\n").expect("parses");
        assert_eq!(names, HashedNames { js: "AAA".into(), wasm: "BBB".into(), css: Some("CCC".into()) });
        assert_eq!(HashedNames::parse("css: CCC\n"), None);
    }

    #[test]
    fn only_plain_paths_map_to_files() {
        let root = Path::new("/site");
        assert_eq!(file_for(root, "/pkg/charcha.wasm"), Some(PathBuf::from("/site/pkg/charcha.wasm")));
        assert_eq!(file_for(root, "/pkg/../../etc/passwd"), None);
        assert_eq!(file_for(root, "/pkg/%2e%2e/x"), None);
    }

    #[test]
    fn siblings_are_written_once_and_rewritten_when_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let js = dir.path().join("pkg").join("app.js");
        std::fs::create_dir_all(js.parent().expect("parent")).expect("mkdir");
        std::fs::write(&js, "console.log('hello');\n".repeat(200)).expect("write");
        std::fs::write(dir.path().join("image.png"), b"not compressible").expect("write");
        let first = precompress_dir(dir.path()).expect("precompress");
        assert_eq!(first, PrecompressReport { written: 1, fresh: 0 });
        assert!(!dir.path().join("image.png.br").exists());
        let br = std::fs::read(sibling(&js, "br")).expect("br");
        let mut plain = Vec::new();
        brotli::BrotliDecompress(&mut &br[..], &mut plain).expect("brotli");
        assert_eq!(plain, std::fs::read(&js).expect("read"));
        assert_eq!(precompress_dir(dir.path()).expect("again"), PrecompressReport { written: 0, fresh: 1 });
        // A rebuilt source (newer than its siblings) is compressed again.
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&js).and_then(|f| f.set_modified(later)).expect("touch");
        assert_eq!(precompress_dir(dir.path()).expect("stale"), PrecompressReport { written: 1, fresh: 0 });
    }
}
