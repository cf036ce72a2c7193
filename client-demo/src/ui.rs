//! The interface, in bevy_ui: the HUD (ping, tick, FPS, entities in view, the avatar's health and level), the
//! chat box (log and input line), the inventory panel with crafting, and a line of help.
//!
//! Chat input: `Enter` opens the input line and sends it; `Esc` closes it. A line is said locally (`say`), or is a
//! command: `/s text` shouts to everyone (`shout`), `/w name text` whispers (`whisper`), `/name new-name` renames
//! (`set_name`), `/tp x y` teleports (`teleport`, a demo convenience).

use std::collections::{HashMap, VecDeque};

use bevy::input::ButtonState;
use bevy::input::keyboard::{Key, KeyboardInput};
use bevy::prelude::*;
use game_module::content::content;
use game_module::players::max_hp;
use locus_client::bevy::{LocusEvent, RowEntities};
use locus_client::{Client, Event};

use crate::net::{Net, Status};
use crate::sprites::{
    Art, CreatureRow, DrawSystems, GroundItemRow, NodeRow, OwnAvatar, PlayerRow, Prediction,
    item_name,
};

/// The most lines the chat log keeps.
pub const CHAT_LINES: usize = 60;

/// Lines of the log shown.
pub const CHAT_SHOWN: usize = 9;

/// The longest chat input line, in characters.
pub const CHAT_INPUT_MAX: usize = 200;

/// What a chat line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineKind {
    /// Said nearby.
    Local,
    /// Shouted to everyone.
    Global,
    /// A whisper, to or from this player.
    Whisper,
    /// From the client itself (connection, refused calls).
    System,
}

impl LineKind {
    fn color(self) -> Color {
        match self {
            LineKind::Local => Color::WHITE,
            LineKind::Global => Color::srgb(1.0, 0.85, 0.45),
            LineKind::Whisper => Color::srgb(0.85, 0.6, 1.0),
            LineKind::System => Color::srgb(0.6, 0.85, 1.0),
        }
    }
}

/// The chat log: messages of the three chat tables as they arrive, and the client's own notices.
#[derive(Resource, Default, Debug)]
pub struct ChatLog {
    /// Oldest first.
    pub lines: VecDeque<(LineKind, String)>,
    /// The newest message id logged, by table (ids grow, so older rows coming into view are not logged again,
    /// and the log's memory stays bounded however long it runs).
    newest: HashMap<&'static str, u64>,
    /// Bumped on every change (the view redraws when it moves).
    pub version: u64,
}

impl ChatLog {
    /// Add a line.
    pub fn push(&mut self, kind: LineKind, text: String) {
        self.lines.push_back((kind, text));
        while self.lines.len() > CHAT_LINES {
            self.lines.pop_front();
        }
        self.version += 1;
    }

    /// Add a notice of the client's own.
    pub fn system(&mut self, text: String) {
        self.push(LineKind::System, text);
    }

    /// Log message `id` of `table`, unless it is not newer than one logged already.
    fn message(&mut self, table: &'static str, id: u64, kind: LineKind, text: String) {
        let newest = self.newest.entry(table).or_insert(0);
        if id > *newest {
            *newest = id;
            self.push(kind, text);
        }
    }
}

/// The chat input line.
#[derive(Resource, Default, Debug)]
pub struct ChatInput {
    /// Whether the input line is open (keys type into it instead of walking).
    pub open: bool,
    /// What was typed.
    pub text: String,
}

/// A chat line, understood.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatCommand {
    /// `say`.
    Say(String),
    /// `shout`.
    Shout(String),
    /// `whisper`.
    Whisper {
        /// The recipient's name.
        to: String,
        /// The message.
        text: String,
    },
    /// `set_name`.
    Name(String),
    /// `teleport`.
    Teleport(f32, f32),
}

/// Understand a chat line (see the [module docs](self)); `None` for a blank line.
///
/// # Errors
///
/// A usage message for a malformed command.
pub fn parse_chat(line: &str) -> Result<Option<ChatCommand>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(None);
    }
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Some(ChatCommand::Say(line.to_owned())));
    };
    let (word, rest) = command.split_once(' ').unwrap_or((command, ""));
    let rest = rest.trim();
    let need = |usage: &str| -> Result<(), String> {
        if rest.is_empty() {
            Err(format!("usage: {usage}"))
        } else {
            Ok(())
        }
    };
    let parsed = match word {
        "s" | "shout" => {
            need("/s text")?;
            ChatCommand::Shout(rest.to_owned())
        }
        "say" => {
            need("/say text")?;
            ChatCommand::Say(rest.to_owned())
        }
        "w" | "whisper" | "msg" => {
            let (to, text) = rest.split_once(' ').ok_or("usage: /w name text")?;
            if text.trim().is_empty() {
                return Err("usage: /w name text".into());
            }
            ChatCommand::Whisper {
                to: to.to_owned(),
                text: text.trim().to_owned(),
            }
        }
        "name" => {
            need("/name new-name")?;
            ChatCommand::Name(rest.to_owned())
        }
        "tp" | "teleport" => {
            let mut parts = rest.split_whitespace().map(str::parse::<f32>);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Ok(x)), Some(Ok(y)), None) => ChatCommand::Teleport(x, y),
                _ => return Err("usage: /tp x y".into()),
            }
        }
        _ => {
            return Err(format!("unknown command /{word}; try /s, /w, /name or /tp"));
        }
    };
    Ok(Some(parsed))
}

/// An action of an inventory or crafting button.
#[derive(Component, Clone, Debug, PartialEq)]
pub enum UiAction {
    /// `craft(recipe)`.
    Craft(String),
    /// `eat(item)`.
    Eat(String),
    /// `drop_item(item, 1)`.
    Drop(String),
}

/// Marks the HUD text.
#[derive(Component, Debug)]
struct HudText;

/// Marks the chat log text.
#[derive(Component, Debug)]
struct ChatText;

/// Marks the chat input text.
#[derive(Component, Debug)]
struct ChatInputText;

/// Marks the inventory panel.
#[derive(Component, Debug)]
struct InventoryPanel;

/// The inventory panel's state.
#[derive(Resource, Debug)]
pub struct Inventory {
    /// Whether the panel is shown.
    pub open: bool,
    /// It must be rebuilt.
    dirty: bool,
}

impl Default for Inventory {
    fn default() -> Inventory {
        Inventory {
            open: true,
            dirty: true,
        }
    }
}

/// The frame rate, smoothed.
#[derive(Resource, Default, Debug)]
struct Fps(f32);

/// Registers the interface.
pub struct UiPlugin;

impl Plugin for UiPlugin {
    fn build(&self, app: &mut App) {
        app.init_resource::<ChatLog>()
            .init_resource::<ChatInput>()
            .init_resource::<Inventory>()
            .init_resource::<Fps>()
            .add_systems(Startup, spawn_ui)
            .add_systems(
                Update,
                (
                    (chat_keys, log_messages, inventory_events).before(DrawSystems),
                    (buttons, hud, chat_view, inventory_view).after(DrawSystems),
                ),
            );
    }
}

const PANEL: Color = Color::srgba(0.05, 0.06, 0.08, 0.72);

fn text(s: impl Into<String>, px: f32, color: Color) -> impl Bundle {
    (Text::new(s), TextFont::from_font_size(px), TextColor(color))
}

fn spawn_ui(mut commands: Commands<'_, '_>) {
    // HUD, top left.
    commands.spawn((
        Node {
            position_type: PositionType::Absolute,
            left: Val::Px(8.0),
            top: Val::Px(6.0),
            padding: UiRect::axes(Val::Px(8.0), Val::Px(4.0)),
            ..default()
        },
        BackgroundColor(PANEL),
        Interaction::default(),
        children![(HudText, text("connecting...", 14.0, Color::WHITE))],
    ));
    // Chat, bottom left.
    commands.spawn((
        Node {
            position_type: PositionType::Absolute,
            left: Val::Px(8.0),
            bottom: Val::Px(28.0),
            width: Val::Px(460.0),
            flex_direction: FlexDirection::Column,
            padding: UiRect::all(Val::Px(6.0)),
            ..default()
        },
        BackgroundColor(Color::srgba(0.05, 0.06, 0.08, 0.5)),
        Interaction::default(),
        children![
            (ChatText, text("", 13.0, Color::WHITE)),
            (
                ChatInputText,
                text("Enter: chat", 13.0, Color::srgb(0.7, 0.7, 0.7))
            ),
        ],
    ));
    // Help, bottom.
    commands.spawn((
        Node {
            position_type: PositionType::Absolute,
            left: Val::Px(8.0),
            bottom: Val::Px(6.0),
            ..default()
        },
        children![text(
            "WASD/arrows walk | click ground: walk | click tree/rock/bush: gather | click creature: attack | \
             click item or E: pick up | I: inventory | Enter: chat (/s shout, /w name whisper)",
            12.0,
            Color::srgba(1.0, 1.0, 1.0, 0.8)
        )],
    ));
    // Inventory, right.
    commands.spawn((
        InventoryPanel,
        Node {
            position_type: PositionType::Absolute,
            right: Val::Px(8.0),
            top: Val::Px(6.0),
            width: Val::Px(270.0),
            flex_direction: FlexDirection::Column,
            row_gap: Val::Px(3.0),
            padding: UiRect::all(Val::Px(8.0)),
            ..default()
        },
        BackgroundColor(PANEL),
        Interaction::default(),
    ));
}

/// Typing into the chat line, `I` for the inventory.
fn chat_keys(
    mut keys: MessageReader<'_, '_, KeyboardInput>,
    mut input: ResMut<'_, ChatInput>,
    mut inventory: ResMut<'_, Inventory>,
    mut log: ResMut<'_, ChatLog>,
    client: Option<Res<'_, Client>>,
    mut net: ResMut<'_, Net>,
) {
    for key in keys.read() {
        if key.state != ButtonState::Pressed {
            continue;
        }
        if !input.open {
            match key.logical_key {
                Key::Enter => input.open = true,
                _ if key.key_code == KeyCode::KeyI => {
                    inventory.open = !inventory.open;
                    inventory.dirty = true;
                }
                _ => {}
            }
            continue;
        }
        match &key.logical_key {
            Key::Enter => {
                let line = std::mem::take(&mut input.text);
                input.open = false;
                match parse_chat(&line) {
                    Ok(Some(command)) => send_chat(command, client.as_deref(), &mut net),
                    Ok(None) => {}
                    Err(usage) => log.system(usage),
                }
            }
            Key::Escape => {
                input.text.clear();
                input.open = false;
            }
            Key::Backspace => {
                input.text.pop();
            }
            Key::Space => push_text(&mut input.text, " "),
            Key::Character(s) => push_text(&mut input.text, s),
            _ => {}
        }
    }
}

fn push_text(line: &mut String, s: &str) {
    for c in s.chars().filter(|c| !c.is_control()) {
        if line.chars().count() < CHAT_INPUT_MAX {
            line.push(c);
        }
    }
}

fn send_chat(command: ChatCommand, client: Option<&Client>, net: &mut Net) {
    match command {
        ChatCommand::Say(text) => net.call(client, &game_module::say::call(text), "say"),
        ChatCommand::Shout(text) => net.call(client, &game_module::shout::call(text), "shout"),
        ChatCommand::Whisper { to, text } => {
            net.call(client, &game_module::whisper::call(to, text), "whisper")
        }
        ChatCommand::Name(name) => {
            net.name = Some(name.clone());
            net.call(client, &game_module::set_name::call(name), "set_name")
        }
        ChatCommand::Teleport(x, y) => {
            net.call(client, &game_module::teleport::call(x, y), "teleport")
        }
    };
}

/// Chat rows as they arrive become log lines.
fn log_messages(mut events: MessageReader<'_, '_, LocusEvent>, mut log: ResMut<'_, ChatLog>) {
    for LocusEvent(event) in events.read() {
        let Event::Inserted { name, row, .. } = event else {
            continue;
        };
        match &**name {
            "local_message" => {
                if let Ok(m) = rmp_serde::from_slice::<game_module::LocalMessage>(row) {
                    log.message(
                        "local_message",
                        m.id,
                        LineKind::Local,
                        format!("{}: {}", m.from, m.text),
                    );
                }
            }
            "global_message" => {
                if let Ok(m) = rmp_serde::from_slice::<game_module::GlobalMessage>(row) {
                    log.message(
                        "global_message",
                        m.id,
                        LineKind::Global,
                        format!("[all] {}: {}", m.from, m.text),
                    );
                }
            }
            "whisper" => {
                if let Ok(m) = rmp_serde::from_slice::<game_module::Whisper>(row) {
                    log.message(
                        "whisper",
                        m.id,
                        LineKind::Whisper,
                        format!("[{} -> {}] {}", m.from, m.to, m.text),
                    );
                }
            }
            _ => {}
        }
    }
}

/// Inventory, recipe and item rows changing mark the panel for a rebuild.
fn inventory_events(
    mut events: MessageReader<'_, '_, LocusEvent>,
    mut inventory: ResMut<'_, Inventory>,
) {
    for LocusEvent(event) in events.read() {
        let table = match event {
            Event::Inserted { name, .. }
            | Event::Updated { name, .. }
            | Event::Deleted { name, .. } => &**name,
            Event::Connected { .. } => "inventory_item",
            _ => continue,
        };
        if matches!(table, "inventory_item" | "recipe" | "item_kind") {
            inventory.dirty = true;
        }
    }
}

/// Inventory and crafting buttons.
fn buttons(
    pressed: Query<'_, '_, (&Interaction, &UiAction), Changed<Interaction>>,
    client: Option<Res<'_, Client>>,
    mut net: ResMut<'_, Net>,
) {
    for (interaction, action) in &pressed {
        if *interaction != Interaction::Pressed {
            continue;
        }
        let client = client.as_deref();
        match action {
            UiAction::Craft(recipe) => {
                net.call(client, &game_module::craft::call(recipe.clone()), "craft")
            }
            UiAction::Eat(item) => net.call(client, &game_module::eat::call(item.clone()), "eat"),
            UiAction::Drop(item) => net.call(
                client,
                &game_module::drop_item::call(item.clone(), 1),
                "drop_item",
            ),
        };
    }
}

/// The entities the HUD counts as "in view": everything drawn but the terrain.
type Drawn = Or<(
    With<PlayerRow>,
    With<CreatureRow>,
    With<NodeRow>,
    With<GroundItemRow>,
)>;

/// The HUD line.
#[expect(clippy::too_many_arguments, reason = "a bevy system's parameters")]
fn hud(
    time: Res<'_, Time>,
    mut fps: ResMut<'_, Fps>,
    net: Res<'_, Net>,
    rows: Res<'_, RowEntities>,
    own: Query<'_, '_, &PlayerRow, With<OwnAvatar>>,
    prediction: Res<'_, Prediction>,
    visible: Query<'_, '_, (), Drawn>,
    mut hud: Query<'_, '_, &mut Text, With<HudText>>,
) {
    let dt = time.delta_secs();
    if dt > 0.0 {
        fps.0 = if fps.0 == 0.0 {
            1.0 / dt
        } else {
            fps.0 * 0.95 + 0.05 / dt
        };
    }
    let Ok(mut text) = hud.single_mut() else {
        return;
    };
    let status = match &net.status {
        Status::Connected => String::new(),
        Status::Connecting => "connecting... | ".to_owned(),
        Status::Disconnected { reason, .. } => format!("offline ({reason}) | "),
    };
    let ping = net
        .rtt
        .map_or_else(|| "-".to_owned(), |d| format!("{} ms", d.as_millis()));
    let visible = visible.iter().count();
    let me = match (own.single(), &prediction.0) {
        (Ok(PlayerRow(p)), Some(pred)) => format!(
            "\n{} | level {} | {} xp | hp {}/{} | ({:.0}, {:.0})",
            p.name,
            p.level,
            p.xp,
            p.hp,
            max_hp(p.level),
            pred.pos().x,
            pred.pos().y
        ),
        _ => String::new(),
    };
    let line = format!(
        "{status}ping {ping} | tick {} | {:.0} fps | {visible} entities ({} rows){me}",
        net.tick,
        fps.0,
        rows.len()
    );
    if text.0 != line {
        text.0 = line;
    }
}

/// The chat log (one coloured span per line) and the input line.
fn chat_view(
    mut commands: Commands<'_, '_>,
    log: Res<'_, ChatLog>,
    input: Res<'_, ChatInput>,
    mut shown: Local<'_, u64>,
    log_text: Query<'_, '_, Entity, With<ChatText>>,
    mut input_text: Query<'_, '_, (&mut Text, &mut TextColor), With<ChatInputText>>,
) {
    if log.version != *shown
        && let Ok(entity) = log_text.single()
    {
        *shown = log.version;
        let start = log.lines.len().saturating_sub(CHAT_SHOWN);
        commands
            .entity(entity)
            .despawn_related::<Children>()
            .with_children(|spans| {
                for (i, (kind, line)) in log.lines.iter().enumerate().skip(start) {
                    let newline = if i + 1 < log.lines.len() { "\n" } else { "" };
                    spans.spawn((
                        TextSpan::new(format!("{line}{newline}")),
                        TextFont::from_font_size(13.0),
                        TextColor(kind.color()),
                    ));
                }
            });
    }
    if input.is_changed()
        && let Ok((mut text, mut color)) = input_text.single_mut()
    {
        if input.open {
            text.0 = format!("> {}_", input.text);
            color.0 = Color::WHITE;
        } else {
            text.0 = "Enter: chat".into();
            color.0 = Color::srgb(0.7, 0.7, 0.7);
        }
    }
}

/// Rebuild the inventory panel when its rows changed.
fn inventory_view(
    mut commands: Commands<'_, '_>,
    mut inventory: ResMut<'_, Inventory>,
    client: Option<Res<'_, Client>>,
    mut panel: Query<'_, '_, (Entity, &mut Node), With<InventoryPanel>>,
    art: Res<'_, Art>,
) {
    if !inventory.dirty {
        return;
    }
    inventory.dirty = false;
    let Ok((panel, mut node)) = panel.single_mut() else {
        return;
    };
    node.display = if inventory.open {
        Display::Flex
    } else {
        Display::None
    };
    commands.entity(panel).despawn_related::<Children>();
    let Some(client) = client else {
        return;
    };
    let cache = client.cache();
    let stacks: Vec<game_module::InventoryItem> = cache.rows("inventory_item").unwrap_or_default();
    let recipes: Vec<game_module::Recipe> = cache.rows("recipe").unwrap_or_default();
    let held = |item: &str| -> u32 {
        stacks
            .iter()
            .filter(|s| s.item == item)
            .map(|s| s.count)
            .sum()
    };
    commands.entity(panel).with_children(|p| {
        p.spawn(text("Inventory (I)", 15.0, Color::srgb(1.0, 0.85, 0.45)));
        if stacks.is_empty() {
            p.spawn(text("empty", 13.0, Color::srgb(0.7, 0.7, 0.7)));
        }
        for stack in &stacks {
            let food = content().item(&stack.item).is_some_and(|d| d.heal > 0);
            p.spawn(row_node()).with_children(|row| {
                row.spawn((
                    ImageNode::new(art.item(&stack.item)),
                    Node {
                        width: Val::Px(20.0),
                        height: Val::Px(20.0),
                        ..default()
                    },
                ));
                row.spawn((
                    text(
                        format!("{} x{}", item_name(&stack.item), stack.count),
                        13.0,
                        Color::WHITE,
                    ),
                    Node {
                        flex_grow: 1.0,
                        ..default()
                    },
                ));
                if food {
                    row.spawn(button("Eat", UiAction::Eat(stack.item.clone()), true));
                }
                row.spawn(button("Drop", UiAction::Drop(stack.item.clone()), true));
            });
        }
        p.spawn(text("Crafting", 15.0, Color::srgb(1.0, 0.85, 0.45)));
        for recipe in &recipes {
            let can = recipe.inputs.iter().all(|i| held(&i.item) >= i.count);
            let inputs = recipe
                .inputs
                .iter()
                .map(|i| format!("{} {}", i.count, item_name(&i.item)))
                .collect::<Vec<_>>()
                .join(" + ");
            p.spawn(row_node()).with_children(|row| {
                row.spawn((
                    text(
                        format!("{}: {inputs}", recipe.name),
                        12.0,
                        if can {
                            Color::WHITE
                        } else {
                            Color::srgb(0.6, 0.6, 0.6)
                        },
                    ),
                    Node {
                        flex_grow: 1.0,
                        flex_shrink: 1.0,
                        ..default()
                    },
                ));
                row.spawn(button("Craft", UiAction::Craft(recipe.id.clone()), can));
            });
        }
    });
}

fn row_node() -> Node {
    Node {
        flex_direction: FlexDirection::Row,
        align_items: AlignItems::Center,
        column_gap: Val::Px(6.0),
        ..default()
    }
}

fn button(label: &str, action: UiAction, enabled: bool) -> impl Bundle {
    let bg = if enabled {
        Color::srgb(0.25, 0.4, 0.3)
    } else {
        Color::srgb(0.25, 0.25, 0.25)
    };
    (
        Button,
        action,
        Node {
            padding: UiRect::axes(Val::Px(6.0), Val::Px(2.0)),
            ..default()
        },
        BackgroundColor(bg),
        children![text(label, 12.0, Color::WHITE)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_lines_become_commands() {
        assert_eq!(parse_chat("  "), Ok(None));
        assert_eq!(
            parse_chat("hello there"),
            Ok(Some(ChatCommand::Say("hello there".into())))
        );
        assert_eq!(
            parse_chat("/s anyone?"),
            Ok(Some(ChatCommand::Shout("anyone?".into())))
        );
        assert_eq!(
            parse_chat("/w bob  meet at the rock"),
            Ok(Some(ChatCommand::Whisper {
                to: "bob".into(),
                text: "meet at the rock".into()
            }))
        );
        assert_eq!(
            parse_chat("/name Ada"),
            Ok(Some(ChatCommand::Name("Ada".into())))
        );
        assert_eq!(
            parse_chat("/tp 2048 2050.5"),
            Ok(Some(ChatCommand::Teleport(2048.0, 2050.5)))
        );
        assert!(parse_chat("/w bob").is_err());
        assert!(parse_chat("/s").is_err());
        assert!(parse_chat("/tp 1").is_err());
        assert!(
            parse_chat("/dance")
                .unwrap_err()
                .contains("unknown command")
        );
    }

    #[test]
    fn the_log_keeps_recent_lines_once_each() {
        let mut log = ChatLog::default();
        log.message("local_message", 1, LineKind::Local, "ann: hi".into());
        log.message("local_message", 1, LineKind::Local, "ann: hi".into());
        log.message(
            "global_message",
            1,
            LineKind::Global,
            "[all] bob: yo".into(),
        );
        assert_eq!(log.lines.len(), 2);
        for i in 0..100 {
            log.system(format!("{i}"));
        }
        assert_eq!(log.lines.len(), CHAT_LINES);
        assert_eq!(log.lines.back().unwrap().1, "99");
        let mut line = String::new();
        push_text(&mut line, "a\u{7}b");
        assert_eq!(line, "ab");
    }
}
