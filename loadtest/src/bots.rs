//! The bots' behaviour: bevy_ecs systems over bot entities, run at 20 Hz by the load test's main loop.
//!
//! Each bot is an entity with a [`Bot`] (its command channel to its network task and its shared [`View`]) and a
//! [`Brain`] (its phase, waypoint, timers and RNG, seeded from the run's seed and the bot's index, so a run is
//! deterministic in what it asks for). The systems, in order:
//! 1. [`handle_events`]: `Welcome` arrived → teleport to a random walkable point of the arena; teleport refused
//!    (water) → another point; answered → walk; session ended → gone.
//! 2. [`wander`]: a walking bot heads for a random waypoint of the arena with `move_to`, and picks a new one on
//!    arrival or after 10–20 s.
//! 3. [`chat`]: now and then (at most once per 10 s) `say`.
//! 4. [`act`]: rarely, walk to the nearest resource node and `gather`, or to the nearest creature and `attack` it.

use std::sync::mpsc;

use bevy_ecs::prelude::*;
use game_module::Vec2;
use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc::UnboundedSender;

use crate::net::{CallKind, Command, NetEvent, SharedView, lock};
use crate::scenario::{self, Arena};

/// Teleports tried before a bot gives up placing itself (and walks from where it is).
const TELEPORT_TRIES: u32 = 10;

/// How near a bot must be to gather or attack (the game allows 3 m).
const REACH: f32 = 2.5;

/// How far a bot looks for something to gather or fight.
const LOOK: f32 = 40.0;

/// A bot's link to its network task.
#[derive(Component, Debug)]
pub(crate) struct Bot {
    /// Calls to send.
    pub(crate) commands: UnboundedSender<Command>,
    /// What its network task knows.
    pub(crate) view: SharedView,
}

impl Bot {
    fn call(&self, kind: CallKind, call: locus_module::ReducerCall) {
        let _ = self.commands.send(Command::Call(kind, call));
    }
}

/// Where a bot is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for `Welcome`.
    Connecting,
    /// Teleported, waiting for the answer.
    Placing,
    /// Walking about.
    Active,
    /// Its session ended.
    Gone,
}

/// What an active bot is doing.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Goal {
    /// Walking between waypoints.
    Wander,
    /// Walking to a resource node to gather from it.
    Gather { node: u64, pos: Vec2, since: f64 },
    /// Chasing a creature to hit it.
    Attack {
        creature: u64,
        since: f64,
        last_move: f64,
        hits: u32,
    },
}

/// A bot's state of mind.
#[derive(Component, Debug)]
pub(crate) struct Brain {
    /// Its phase.
    pub(crate) phase: Phase,
    rng: ChaCha8Rng,
    goal: Goal,
    waypoint: Option<Vec2>,
    waypoint_since: f64,
    patience: f64,
    next_chat: f64,
    next_action: f64,
    teleports: u32,
    /// When it became active (s since the start), for the report.
    pub(crate) active_since: Option<f64>,
}

impl Brain {
    /// A new bot's brain: its RNG is stream `index` of `seed`.
    pub(crate) fn new(seed: u64, index: u32, now: f64) -> Brain {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(u64::from(index));
        let next_chat = now + scenario::next_chat_delay(&mut rng);
        let next_action = now + scenario::next_action_delay(&mut rng);
        Brain {
            phase: Phase::Connecting,
            rng,
            goal: Goal::Wander,
            waypoint: None,
            waypoint_since: now,
            patience: 15.0,
            next_chat,
            next_action,
            teleports: 0,
            active_since: None,
        }
    }
}

/// Seconds since the run started, set by the main loop before each run of the schedule.
#[derive(Resource, Debug, Default)]
pub(crate) struct Clock(pub(crate) f64);

/// The square the bots live in (it grows with the player count in ramp mode).
#[derive(Resource, Debug)]
pub(crate) struct ArenaRes(pub(crate) Arena);

/// Whether bots walk, chat and act ([`crate::Scenario::Standard`]) or stand still once placed
/// ([`crate::Scenario::Idle`]).
#[derive(Resource, Debug)]
pub(crate) struct Behave(pub(crate) bool);

/// Network events, drained from the channel by the main loop before each run of the schedule.
#[derive(Resource, Debug, Default)]
pub(crate) struct Inbox(pub(crate) Vec<NetEvent>);

/// What the brains did, for the report.
#[derive(Resource, Debug, Default)]
pub(crate) struct Tally {
    /// Bots whose teleport into the arena succeeded.
    pub(crate) placed: u64,
    /// Bots that gave up teleporting.
    pub(crate) unplaced: u64,
}

/// The ECS world and schedule of the bots.
pub(crate) struct Brains {
    /// The world: bot entities and resources.
    pub(crate) world: World,
    schedule: Schedule,
    events: mpsc::Receiver<NetEvent>,
}

impl std::fmt::Debug for Brains {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Brains").finish_non_exhaustive()
    }
}

impl Brains {
    /// A world with the arena and the systems, reading network events from `events`.
    pub(crate) fn new(arena: Arena, behave: bool, events: mpsc::Receiver<NetEvent>) -> Brains {
        let mut world = World::new();
        world.insert_resource(Behave(behave));
        world.insert_resource(Clock(0.0));
        world.insert_resource(ArenaRes(arena));
        world.insert_resource(Inbox::default());
        world.insert_resource(Tally::default());
        let mut schedule = Schedule::default();
        schedule.add_systems((handle_events, (wander, chat, act).chain().run_if(behaving)).chain());
        Brains {
            world,
            schedule,
            events,
        }
    }

    /// Run the systems once at time `now`.
    pub(crate) fn step(&mut self, now: f64) {
        self.world.resource_mut::<Clock>().0 = now;
        let events: Vec<NetEvent> = self.events.try_iter().collect();
        self.world.resource_mut::<Inbox>().0.extend(events);
        self.schedule.run(&mut self.world);
    }

    /// Bots in each phase: (connecting, placing, active, gone).
    pub(crate) fn phases(&mut self) -> (u32, u32, u32, u32) {
        let mut out = (0, 0, 0, 0);
        let mut q = self.world.query::<&Brain>();
        for b in q.iter(&self.world) {
            match b.phase {
                Phase::Connecting => out.0 += 1,
                Phase::Placing => out.1 += 1,
                Phase::Active => out.2 += 1,
                Phase::Gone => out.3 += 1,
            }
        }
        out
    }
}

fn behaving(behave: Res<'_, Behave>) -> bool {
    behave.0
}

fn teleport(bot: &Bot, brain: &mut Brain, arena: &Arena) {
    let p = scenario::next_waypoint(arena, &mut brain.rng);
    brain.teleports += 1;
    brain.phase = Phase::Placing;
    bot.call(CallKind::Teleport, game_module::teleport::call(p.x, p.y));
}

fn activate(brain: &mut Brain, now: f64) {
    brain.phase = Phase::Active;
    brain.active_since = Some(now);
    brain.waypoint = None;
    brain.goal = Goal::Wander;
}

/// Apply network events: connected → place; teleport answered → active (or try again); ended → gone.
pub(crate) fn handle_events(
    mut inbox: ResMut<'_, Inbox>,
    mut bots: Query<'_, '_, (&Bot, &mut Brain)>,
    arena: Res<'_, ArenaRes>,
    clock: Res<'_, Clock>,
    mut tally: ResMut<'_, Tally>,
) {
    for event in inbox.0.drain(..) {
        match event {
            NetEvent::Connected(e) => {
                if let Ok((bot, mut brain)) = bots.get_mut(e) {
                    teleport(bot, &mut brain, &arena.0);
                }
            }
            NetEvent::Result { entity, kind, ok } => {
                let Ok((bot, mut brain)) = bots.get_mut(entity) else {
                    continue;
                };
                if kind == CallKind::Teleport && brain.phase == Phase::Placing {
                    if ok {
                        tally.placed += 1;
                        activate(&mut brain, clock.0);
                    } else if brain.teleports < TELEPORT_TRIES {
                        teleport(bot, &mut brain, &arena.0);
                    } else {
                        tally.unplaced += 1;
                        activate(&mut brain, clock.0);
                    }
                }
            }
            NetEvent::Ended(e) => {
                if let Ok((_, mut brain)) = bots.get_mut(e) {
                    brain.phase = Phase::Gone;
                }
            }
        }
    }
}

/// Walk between random waypoints of the arena.
pub(crate) fn wander(
    mut bots: Query<'_, '_, (&Bot, &mut Brain)>,
    arena: Res<'_, ArenaRes>,
    clock: Res<'_, Clock>,
) {
    let now = clock.0;
    for (bot, mut brain) in &mut bots {
        if brain.phase != Phase::Active || brain.goal != Goal::Wander {
            continue;
        }
        let Some(pos) = lock(&bot.view).pos else {
            continue;
        };
        if scenario::needs_new_waypoint(
            pos,
            brain.waypoint,
            brain.waypoint_since,
            now,
            brain.patience,
        ) {
            let w = scenario::next_waypoint(&arena.0, &mut brain.rng);
            brain.waypoint = Some(w);
            brain.waypoint_since = now;
            brain.patience = scenario::patience(&mut brain.rng);
            bot.call(CallKind::MoveTo, game_module::move_to::call(w.x, w.y));
        }
    }
}

/// Say something now and then: at most once per 10 s, on average every 25 s.
pub(crate) fn chat(mut bots: Query<'_, '_, (&Bot, &mut Brain)>, clock: Res<'_, Clock>) {
    let now = clock.0;
    for (bot, mut brain) in &mut bots {
        if brain.phase != Phase::Active || now < brain.next_chat {
            continue;
        }
        let delay = scenario::next_chat_delay(&mut brain.rng);
        brain.next_chat = now + delay;
        let line = scenario::chat_line(&mut brain.rng);
        bot.call(CallKind::Say, game_module::say::call(line.to_owned()));
    }
}

/// Rarely gather from the nearest resource node or fight the nearest creature; pursue that goal.
pub(crate) fn act(mut bots: Query<'_, '_, (&Bot, &mut Brain)>, clock: Res<'_, Clock>) {
    let now = clock.0;
    for (bot, mut brain) in &mut bots {
        if brain.phase != Phase::Active {
            continue;
        }
        let brain = &mut *brain;
        match brain.goal {
            Goal::Wander => {
                if now < brain.next_action {
                    continue;
                }
                brain.next_action = now + scenario::next_action_delay(&mut brain.rng);
                let gather = brain.rng.random_bool(0.5);
                let v = lock(&bot.view);
                let Some(pos) = v.pos else { continue };
                let pick = |map: &std::collections::HashMap<u64, Vec2>| {
                    scenario::nearest(pos, map.iter().map(|(k, p)| (*k, *p)), LOOK)
                };
                let goal = if gather {
                    pick(&v.nodes).map(|(node, p)| Goal::Gather {
                        node,
                        pos: p,
                        since: now,
                    })
                } else {
                    pick(&v.creatures).map(|(creature, _)| Goal::Attack {
                        creature,
                        since: now,
                        last_move: f64::NEG_INFINITY,
                        hits: 0,
                    })
                };
                drop(v);
                if let Some(goal) = goal {
                    brain.goal = goal;
                    if let Goal::Gather { pos: p, .. } = goal {
                        bot.call(CallKind::MoveTo, game_module::move_to::call(p.x, p.y));
                    }
                }
            }
            Goal::Gather {
                node,
                pos: p,
                since,
            } => {
                let Some(pos) = lock(&bot.view).pos else {
                    continue;
                };
                if pos.distance(p) <= REACH {
                    bot.call(CallKind::Gather, game_module::gather::call(node));
                    brain.goal = Goal::Wander;
                    brain.waypoint = None;
                } else if now - since > 20.0 {
                    brain.goal = Goal::Wander;
                    brain.waypoint = None;
                }
            }
            Goal::Attack {
                creature,
                since,
                last_move,
                hits,
            } => {
                let (pos, target) = {
                    let v = lock(&bot.view);
                    (v.pos, v.creatures.get(&creature).copied())
                };
                let (Some(pos), Some(target)) = (pos, target) else {
                    brain.goal = Goal::Wander;
                    brain.waypoint = None;
                    continue;
                };
                if hits >= 3 || now - since > 20.0 {
                    brain.goal = Goal::Wander;
                    brain.waypoint = None;
                } else if pos.distance(target) <= REACH {
                    if now - last_move >= 1.0 {
                        bot.call(CallKind::Attack, game_module::attack::call(creature));
                        brain.goal = Goal::Attack {
                            creature,
                            since,
                            last_move: now,
                            hits: hits + 1,
                        };
                    }
                } else if now - last_move >= 1.0 {
                    bot.call(
                        CallKind::MoveTo,
                        game_module::move_to::call(target.x, target.y),
                    );
                    brain.goal = Goal::Attack {
                        creature,
                        since,
                        last_move: now,
                        hits,
                    };
                }
            }
        }
    }
}
