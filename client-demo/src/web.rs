//! The browser build: settings from the page's URL, the server from `locus.json`, and marks for tests.
//!
//! The page (`client-demo/web/index.html`, served with the wasm by `locus serve --web ADDR`) loads the wasm, whose
//! `main` calls [`start`]. Query parameters of the page's URL: `name=NAME` (enter with this name; the identity
//! token is kept in `localStorage` per name), `teleport=X,Y` (jump there on entering), `server=URL` (the
//! `locus.json` to read; default: the page's own `/locus.json`).
//!
//! Marks on `window`, for tests and measurements (milliseconds since the page started loading,
//! `performance.now()`): `locusFirstFrameMs` once the first frame is drawn, `locusReadyMs` once the world around
//! the avatar is drawn (the same test as the native screenshot's, [`crate::auto::world_ready`]), and
//! `locusIdentity` (hex) once connected.

use bevy::prelude::*;
use locus_client::{Client, WebTransportConfig};
use wasm_bindgen::{JsCast as _, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::auto::{AutoRun, world_ready};
use crate::net::{Net, Source};
use crate::sprites::{ChunkRow, OwnAvatar, PlayerRow};
use crate::{Settings, build};

/// The page's `window` (the wasm runs only in a page).
fn window() -> web_sys::Window {
    web_sys::window().expect("the browser build runs in a page")
}

/// Settings from the page's URL `href`'s query.
///
/// # Errors
///
/// A `teleport` that is not `X,Y`.
pub fn settings_from(href: &str) -> Result<Settings, String> {
    let url = web_sys::Url::new(href).map_err(|e| format!("{e:?}"))?;
    let query = url.search_params();
    let name = query.get("name").filter(|n| !n.is_empty());
    let teleport = query
        .get("teleport")
        .map(|t| crate::parse_point(&t))
        .transpose()?;
    let server = query
        .get("server")
        .unwrap_or_else(|| format!("{}/locus.json", url.origin()));
    let token_key = format!(
        "locus-demo-token-{}",
        name.as_deref().unwrap_or("default").to_ascii_lowercase()
    );
    Ok(Settings {
        source: Source::LocusJson {
            url: server,
            token_key,
        },
        name,
        teleport,
        size: (1280, 720),
        auto: AutoRun::new(None, None, None),
    })
}

/// Run the demo in the page.
///
/// # Panics
///
/// Outside a page, or with a bad query (said on the console first).
pub fn start() {
    let href = window().location().href().expect("the page's URL");
    let settings = settings_from(&href).unwrap_or_else(|e| panic!("bad page URL {href}: {e}"));
    build(settings).run();
}

/// Fetch `locus.json` at `url`: the server's WebTransport URL and the hashes of its certificate.
///
/// # Errors
///
/// What went wrong, for people.
pub async fn fetch_config(url: &str) -> Result<WebTransportConfig, String> {
    let describe = |e: JsValue| format!("{e:?}");
    let response = JsFuture::from(window().fetch_with_str(url))
        .await
        .map_err(describe)?;
    let response: web_sys::Response = response.dyn_into().map_err(describe)?;
    if !response.ok() {
        return Err(format!("HTTP status {}", response.status()));
    }
    let text = JsFuture::from(response.text().map_err(describe)?)
        .await
        .map_err(describe)?;
    let text = text.as_string().ok_or("locus.json is not text")?;
    WebTransportConfig::from_locus_json(&text).map_err(|e| e.to_string())
}

/// Sets the marks on `window` (module docs).
pub struct MarksPlugin;

impl Plugin for MarksPlugin {
    fn build(&self, app: &mut App) {
        app.add_systems(Last, mark);
    }
}

/// Which marks are set.
#[derive(Default)]
struct Marked {
    first_frame: bool,
    ready: bool,
    identity: bool,
}

fn set(name: &str, value: &JsValue) {
    let _ = js_sys::Reflect::set(&window(), &JsValue::from_str(name), value);
}

fn now_ms() -> f64 {
    window().performance().map_or(0.0, |p| p.now())
}

fn mark(
    mut marked: Local<'_, Marked>,
    net: Res<'_, Net>,
    own: Query<'_, '_, &PlayerRow, With<OwnAvatar>>,
    chunks: Query<'_, '_, (), (With<ChunkRow>, With<Sprite>)>,
    client: Option<Res<'_, Client>>,
) {
    if !marked.first_frame {
        marked.first_frame = true;
        set("locusFirstFrameMs", &now_ms().into());
    }
    if !marked.identity
        && let Some(client) = client
    {
        marked.identity = true;
        set("locusIdentity", &client.identity().to_string().into());
    }
    let own_name = own.single().ok().map(|p| p.0.name.as_str());
    if !marked.ready && world_ready(own_name, net.name.as_deref(), chunks.iter().count()) {
        marked.ready = true;
        set("locusReadyMs", &now_ms().into());
    }
}
