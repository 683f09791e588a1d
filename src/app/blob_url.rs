//! Local `blob:` URLs that show a picked image before it is uploaded (the
//! avatar preview, an attachment in the composer). Each one pins the file in
//! the browser's memory until it is revoked, so every owner revokes its URL
//! once the preview is gone.

/// A `blob:` URL for `file`, or `None` if the browser refuses one.
#[cfg(feature = "hydrate")]
pub fn create(file: &web_sys::File) -> Option<String> {
    web_sys::Url::create_object_url_with_blob(file).ok()
}

/// Frees a URL from [`create`] (a no-op on the server, which has none).
pub fn revoke(url: &str) {
    #[cfg(feature = "hydrate")]
    {
        let _ = web_sys::Url::revoke_object_url(url);
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = url;
}
