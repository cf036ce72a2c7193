//! `client-demo`: a top-down client for the Locus demo world.
//!
//! Start a world (`cargo run --release -p locus-server -- serve`), then, from the same directory (so that the
//! server's certificate `locus-data/cert.der` is found), `cargo run --release -p client-demo -- --name Ada`.
//! Options: `--server ADDR` (default `127.0.0.1:7878`), `--fingerprint HEX` or `--cert PATH` (how to trust the
//! server), `--token-file PATH` (keeps the identity; default `client-demo-data/<name>.token`), `--teleport X,Y`
//! (jump there on entering), and for unattended
//! runs `--screenshot PATH`, `--exit-after-secs N`, `--dump-cache PATH`. `--help` lists them all.
//!
//! # Controls
//!
//! | input | does |
//! |---|---|
//! | `W` `A` `S` `D` / arrow keys | walk (`move_dir`); releasing stops |
//! | left click on the ground | walk there (`move_to`) |
//! | left click on a tree, rock, iron vein or berry bush | walk up to it and gather, again and again (`gather`) |
//! | left click on a creature | walk up to it and attack until it dies (`attack`) |
//! | left click on an item on the ground, or `E` | walk up to it and pick it up (`pick_up`) |
//! | `I` | show or hide the inventory; its buttons eat (`eat`), drop (`drop_item`) and craft (`craft`) |
//! | `Enter` | open the chat line; `Enter` sends it, `Esc` cancels |
//! | chat: `text` | say it to players nearby (`say`) |
//! | chat: `/s text` | shout it to everyone (`shout`) |
//! | chat: `/w name text` | whisper it to one player (`whisper`) |
//! | chat: `/name new-name`, `/tp x y` | rename (`set_name`), teleport (`teleport`) |
//!
//! The HUD shows the round trip of the last call (ping), the server tick, frames per second and the entities in
//! view. Your own avatar wears orange; it moves as soon as you press a key (predicted) and is corrected by the
//! server's position; everyone else is drawn smoothly a little in the past, interpolated between server ticks.

#[cfg(not(target_arch = "wasm32"))]
fn main() -> anyhow::Result<()> {
    use clap::Parser as _;
    use client_demo::cli::Args;

    let args = Args::parse();
    let mut app = client_demo::app(&args)?;
    match app.run() {
        bevy::app::AppExit::Success => Ok(()),
        bevy::app::AppExit::Error(code) => anyhow::bail!("the app exited with code {code}"),
    }
}

/// In the browser: settings come from the page's URL (`client_demo::web`).
#[cfg(target_arch = "wasm32")]
fn main() {
    client_demo::web::start();
}
