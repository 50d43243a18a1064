"""The daemon: wires config, drivers, rules, alarms, the command gate and the uplink together.

Event path: driver → ``handle_event`` → rules (synchronous) → actions started at once →
alarms → publisher. Safety never waits for the network: rules run and actuate whether or not
the broker is there; the outbox catches up later. Nor does it wait for the SD card: nothing
under the data directory can keep the daemon from starting, and a card that stops taking
writes leaves the rules running from memory (``gateway.storage_failed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gatewayd import config as config_mod
from gatewayd import control, events, plugins, sdnotify, ticks
from gatewayd.alarms import OUTBOX_FULL, STATE_LOST
from gatewayd.alarms.keeper import AlarmKeeper
from gatewayd.alarms.responses import Responses
from gatewayd.audit import AuditLog
from gatewayd.buses import Buses
from gatewayd.commands import Gate
from gatewayd.commands.dispatch import CommandHandler
from gatewayd.commands.replay import ReplayCache
from gatewayd.commands.service import CommandService
from gatewayd.config import Config
from gatewayd.drill import Drill
from gatewayd.errors import GatewayError
from gatewayd.family import Family
from gatewayd.house import Household
from gatewayd.linkage import Actuator
from gatewayd.model import TICK, Event, is_internal
from gatewayd.uplink.link import MqttLink
from gatewayd.uplink.outbox import Outbox
from gatewayd.uplink.publisher import Publisher
from gatewayd.uplink.topics import Topics
from rules.engine import ClearAlarm, Engine, Outcome, World

if TYPE_CHECKING:
    from gatewayd.metrics import MetricsHandle
    from gatewayd.metrics.snapshot import Snapshot

log = logging.getLogger("gatewayd")

FLUSH_TIMEOUT = 5.0  # s to drain the outbox on shutdown


class Gateway:
    def __init__(self, config: Config, tick_seconds: float = 1.0) -> None:
        try:  # before anything inside it; a card that refuses is each part's to report
            os.makedirs(config.data_dir, mode=0o750, exist_ok=True)
        except OSError as exc:
            log.error("cannot create the data directory %s: %s", config.data_dir, exc.strerror)
        self.config = config
        self.tick_seconds = tick_seconds
        self.started = time.time()
        self._running = False
        self._damaged: list[tuple[int, str]] = []
        self.topics = Topics(config.topic_root)
        self.outbox = Outbox(
            os.path.join(config.data_dir, "outbox"),
            budget_bytes=config.outbox.budget_mb << 20,
            window=config.outbox.commit_window_seconds,
            telemetry_max=config.outbox.telemetry_buffer,
            telemetry_ttl=config.outbox.telemetry_ttl_seconds,
            on_full=self._outbox_full,
            on_damaged=self._outbox_damaged,
        )
        self.families: Mapping[str, Family] = plugins.families()
        self.house = Household(lambda: self.config, self.families)
        self.publisher = Publisher(
            self.topics, self.outbox, self.started, config.site, self.house, config.uplink
        )
        self.engine = Engine.from_config(config.rules)
        self.keeper = AlarmKeeper(
            config.data_dir, config.gateway_id, self.engine.catalogue(), self._alarms_changed
        )
        self.alarms = self.keeper.book  # the one owner of alarms and fire mode
        self.replay = ReplayCache(os.path.join(config.data_dir, "replay.log"))
        self.audit = AuditLog(os.path.join(config.data_dir, "audit"))
        self.world = World(
            config.gateway_id,
            {d.id: d for d in config.devices},
            {},
            self.alarms.alarms,
            self.alarms.fire_mode,
            families=self.families,
        )
        self.gate = Gate(
            config.command_key.value if config.command_key else None,
            config.gateway_id,
            self.house.actions,
            self.replay,
            config.commands_per_minute,
        )
        self.bus_runner = Buses(self, self._driver_failed)
        self.buses = self.bus_runner.supervised  # bus name -> its supervised driver
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self.link: MqttLink | None = None
        self.ready: Callable[[], None] = lambda: None
        #: Called with every event after the rules (the control socket's `events --follow`,
        #: metrics). Listeners must be quick and must not raise.
        self.listeners: list[Callable[[Event], None]] = []
        self.service = CommandService(
            self.bus_runner.driver_of,
            lambda a: self.engine.permit(a, self.world),
            lambda d: self.audit.unrecorded(self.house.family_of(d)),
        )
        self.actuator = Actuator(self, self._spawn)
        #: What people do about alarms (acknowledge, reset, end fire mode).
        self.responses = Responses(
            config.gateway_id,
            self.keeper,
            self.audit,
            lambda a: self.engine.permit_reset(a, self.world),
            self.handle_event,
        )
        #: Fire drills (test mode): the fire linkage on demand, never the real fire mode.
        self.drill = Drill(self.world, lambda: self.engine.fresh("fire"), self.alarms.catalogue,
                           lambda: self.alarms.fire_mode, self.publisher.event,
                           self.actuator.results)  # fmt: skip
        self.control: control.ControlServer | None = None
        self.commands = CommandHandler(self)

    # -- lifecycle -----------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.link = MqttLink(
            self.config,
            will=self.publisher.will(),
            on_message=self._on_message,
            on_connected=self.publisher.on_connected,
            on_acked=self.publisher.on_acked,
            on_disconnected=self.publisher.on_disconnected,
            subscriptions=(self.topics.cmd,),
            farewell=lambda: (self.topics.status, self.publisher.status_payload(False)),
        )
        self.publisher.bind(self.link, self.alarms.active, lambda: self.alarms.fire_mode)
        metrics_handle: MetricsHandle | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                outbox_task = tg.create_task(self.outbox.run(), name="outbox")
                async with self.link:  # leaving it says "offline" and awaits the PUBACK
                    services = [tg.create_task(self._ticks(), name="ticks")]
                    if sdnotify.enabled():  # the watchdog, and a STATUS= kept current
                        report = sdnotify.report(
                            self.health, self.status_line, sdnotify.watchdog_interval()
                        )
                        services.append(tg.create_task(report, name="systemd"))
                    self.bus_runner.start(tg, self.config)
                    self._state_lost()
                    self._devices_changed(set(self.keeper.recall("devices") or ()))
                    self._running = True
                    for damaged, path in self._damaged:  # found while starting
                        self._outbox_damaged(damaged, path)
                    log.info(
                        "ready: gateway %s, %d buses, %d devices%s",
                        self.config.gateway_id,
                        len(self.config.buses),
                        len(self.config.devices),
                        ", FIRE MODE" if self.alarms.fire_mode else "",
                    )
                    ctl = self.control = await control.serve(self)
                    self.ready()
                    sdnotify.notify(f"READY=1\nSTATUS={self.status_line()}")
                    # After READY: prometheus_client's import (~70 ms on a Pi) never delays
                    # start-up.
                    from gatewayd import metrics  # only a running daemon serves metrics

                    metrics_handle = metrics.attach(self)
                    if self.config.metrics_push_seconds:
                        pushing = metrics_handle.push(self.link, self.topics.metrics)
                        services.append(tg.create_task(pushing, name="metrics-push"))
                    # What start-up built lives as long as the daemon: out of the collector's
                    # sight, so full collections (pauses in a scrape or a burst) stay short.
                    gc.freeze()
                    await self._stop.wait()
                    log.info("stopping")
                    sdnotify.notify("STOPPING=1")
                    await ctl.close()
                    for task in services:
                        task.cancel()
                    await self.bus_runner.stop()
                    await self._flush()  # the backlog's PUBACKs, within FLUSH_TIMEOUT
                outbox_task.cancel()  # its last commit keeps whatever the broker has not taken
                for task in self._tasks:
                    task.cancel()
        finally:
            if metrics_handle is not None:
                metrics_handle.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            for part in (self.replay, self.audit, self.outbox, self.keeper):
                try:  # each on its own: a full disk must not keep the rest open
                    part.close()
                except OSError as exc:
                    log.error("closing %s: %s", type(part).__name__, exc)
            log.info("stopped")

    def stop(self) -> None:
        self._stop.set()

    def health(self) -> str | None:
        """None when healthy, else why not: feeds the systemd watchdog."""
        return self.bus_runner.health()

    def status_line(self) -> str:
        up = self.link is not None and self.link.connected
        broker = "broker " + ("connected" if up else "offline")
        fire = ", FIRE MODE" if self.alarms.fire_mode else ""
        return (
            f"{len(self.config.devices)} devices, {len(self.alarms.alarms)} alarms, {broker}{fire}"
        )

    async def _flush(self) -> None:
        if self.link is None or not self.link.connected:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FLUSH_TIMEOUT):
                while self.outbox.depth and self.link.connected:
                    await asyncio.sleep(0.02)

    def reload(self) -> str | None:
        """SIGHUP: re-read the config; restart the buses whose settings or devices changed
        (the others keep running: a receiver reopened for nothing would miss radio frames),
        renew the rules if their settings changed; keep the broker link. Returns why the
        new config was refused, or None when it was taken."""
        try:
            new = config_mod.load(self.config.path)
        except GatewayError as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            return str(exc)
        old = self.config
        if new.keeping_identity(old) != new:
            log.warning(
                "reload: [gateway], [mqtt] and [security] changes take effect after a restart"
            )
            new = new.keeping_identity(old)
        self.config = new
        self._devices_changed({d.id for d in old.devices})
        if new.rules != old.rules:  # unchanged rules keep what they know (timers, sightings)
            self.engine = Engine.from_config(new.rules)
        self.world.devices = {d.id: d for d in new.devices}
        self.gate.limiter.capacity = float(new.commands_per_minute)
        self.publisher.exceptions.settings = new.uplink
        restarted, restart = self.bus_runner.reload(old, new)
        self._spawn(restart, "reload")
        log.info("reloaded %s: %d buses (%d restarted), %d devices",
                 new.path, len(new.buses), restarted, len(new.devices))  # fmt: skip
        return None

    def _driver_failed(self, bus: str, reason: str, restarts: int) -> None:
        data = {"bus": bus, "reason": reason, "restarts": restarts}
        self.handle_event(Event(self.config.gateway_id, events.DRIVER_FAILED, "warning", data))

    async def _ticks(self) -> None:
        while True:
            await ticks.tick(self.tick_seconds)  # with the other periodic loops: one wake-up
            self._check_storage()
            self.handle_event(Event(self.config.gateway_id, TICK))

    def _check_storage(self) -> None:
        """Every store the gateway must write, as one alarm with a part per failing store."""
        self.keeper.check_storage(
            {
                "replay": self.replay.error,
                "audit": self.audit.error if not self.audit.healthy else None,
                "outbox": self.outbox.disk_error,
            },
            retry=(self.replay.retry, self.audit.retry),
        )

    def _devices_changed(self, before: set[str]) -> None:
        """The platform learns the house: the devices list, and a removed device's retained
        state cleared (remembered across restarts: a device removed while the daemon was
        stopped is cleared too)."""
        now = [d.id for d in self.config.devices]
        for gone in sorted(before - set(now)):
            self.publisher.forget(gone)
        self.publisher.devices_changed()
        self.keeper.remember("devices", now)

    def _state_lost(self) -> None:
        """At start: if the SD card lost the state, say so everywhere; the rules cut every
        charger (a port cut for heat must not come back on because its alarm was lost)."""
        alarm = self.keeper.start()
        if alarm is not None:
            self.handle_event(
                Event(self.config.gateway_id, STATE_LOST, "critical", dict(alarm.data))
            )

    # -- events, state, alarms --------------------------------------------------------------

    def handle_event(self, event: Event) -> None:
        """One event through the rules, then out. Never raises: a bad event is logged."""
        device = self.world.devices.get(event.device)
        family = self.families.get(device.kind) if device is not None else None
        if family is not None and family.audited:
            event = self.audit.attribute(event, family)
            self.audit.event(event, family)
        self.world.now = event.ts if event.type != TICK else time.time()
        fire_mode = self.world.fire_mode  # as last published; a person may have reset it
        self.world.fire_mode = self.alarms.fire_mode
        outcome = self.engine.handle(event, self.world)
        if outcome.actions:  # actuation first: nothing below may delay a cut
            self.actuator.run(outcome.actions)
        if not is_internal(event.type):
            self.publisher.event(event)  # the news before the bookkeeping
        self._apply(outcome)
        if self.alarms.fire_mode != fire_mode:
            self.world.fire_mode = self.alarms.fire_mode
            self.publisher.status_changed()
        if event.type != TICK:
            self._tell(event)  # samples too: metrics count energy from them
        for derived in outcome.events:
            self.publisher.event(derived)
            self._tell(derived)

    def _tell(self, event: Event) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # a listener's bug must not stop the event path
                log.exception("event listener failed")

    def _apply(self, outcome: Outcome) -> None:
        for change in outcome.alarms:
            if isinstance(change, ClearAlarm):
                self.alarms.clear(change.device, change.type, change.part)
            else:
                self.alarms.raise_(change.device, change.type, change.data, change.part)

    def _outbox_damaged(self, records: int, path: str) -> None:
        """Damaged outbox records were skipped (a bad SD card): counted, said, never fatal.
        Found while starting (before the rules run), they are said once the daemon runs."""
        if not self._running:
            self._damaged.append((records, path))
            return
        data = {"records": records, "file": os.path.basename(path)}
        self.handle_event(Event(self.config.gateway_id, events.OUTBOX_DAMAGED, "warning", data))

    def _outbox_full(self, full: bool) -> None:
        gid = self.config.gateway_id
        if full:
            detail = self.outbox.disk_error or f"over its {self.config.outbox.budget_mb} MB budget"
            self.alarms.raise_(gid, OUTBOX_FULL, {"detail": detail})
        else:
            self.alarms.clear(gid, OUTBOX_FULL)

    def telemetry(self, device: str, values: Mapping[str, Any]) -> None:
        self.publisher.telemetry(device, values)

    def snapshot(self) -> Snapshot:
        """A read-only picture for one metrics scrape (taken on the event loop)."""
        from gatewayd.metrics.snapshot import take_snapshot  # a scrape's, not start-up's

        return take_snapshot(self)

    def set_state(self, device: str, state: Mapping[str, Any]) -> None:
        self.world.states.setdefault(device, {}).update(state)
        self.publisher.state(device, state)

    def _alarms_changed(self) -> None:
        """The book's changes of one event, told once (the book coalesces and defers them)."""
        self.world.alarms = self.alarms.alarms
        self.publisher.alarms_changed()

    # -- actions and commands ------------------------------------------------------------

    def family_of(self, device: str) -> Family | None:
        return self.house.family_of(device)

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.cmd:
            self._spawn(self.commands.handle(payload), "command")

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
