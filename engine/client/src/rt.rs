//! The little the connection needs from an async runtime, for each target: spawning a task and a deadline.
//! Natively that is tokio (the runtime that called `connect`); in the browser, the page's event loop
//! (`wasm_bindgen_futures::spawn_local`) and `setTimeout`.

use std::future::Future;

pub(crate) use web_time::Instant;

/// A deadline passed before the future completed.
#[derive(Debug)]
pub(crate) struct Elapsed;

/// Run `task` in the background on the current tokio runtime.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(task);
}

/// Run `task` in the background on the page's event loop.
#[cfg(target_arch = "wasm32")]
pub(crate) fn spawn(task: impl Future<Output = ()> + 'static) {
    wasm_bindgen_futures::spawn_local(task);
}

/// `future`'s output, or [`Elapsed`] if `deadline` comes first.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) async fn timeout_at<F: Future>(
    deadline: Instant,
    future: F,
) -> Result<F::Output, Elapsed> {
    tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), future)
        .await
        .map_err(|_| Elapsed)
}

/// `future`'s output, or [`Elapsed`] if `deadline` comes first.
#[cfg(target_arch = "wasm32")]
pub(crate) async fn timeout_at<F: Future>(
    deadline: Instant,
    future: F,
) -> Result<F::Output, Elapsed> {
    use futures_util::future::{Either, select};
    let sleep = sleep(deadline.saturating_duration_since(Instant::now()));
    futures_util::pin_mut!(future, sleep);
    match select(future, sleep).await {
        Either::Left((output, _)) => Ok(output),
        Either::Right(((), _)) => Err(Elapsed),
    }
}

/// Wait `duration` (`setTimeout`; a page in the background may be woken later).
#[cfg(target_arch = "wasm32")]
pub(crate) async fn sleep(duration: std::time::Duration) {
    use wasm_bindgen::{JsCast, JsValue};
    let millis = i32::try_from(duration.as_millis()).unwrap_or(i32::MAX);
    let promise = js_sys::Promise::new(&mut |resolve, _reject| {
        let global = js_sys::global();
        let set_timeout = js_sys::Reflect::get(&global, &JsValue::from_str("setTimeout"))
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        // Without timers in this context there is no deadline.
        if let Some(set_timeout) = set_timeout
            && set_timeout
                .call2(&global, &resolve, &JsValue::from(millis))
                .is_err()
        {
            let _ = resolve.call0(&JsValue::UNDEFINED);
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
