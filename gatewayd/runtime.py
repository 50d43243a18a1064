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
from collections.abc import Callable, Collection, Mapping
from typing import Any

from gatewayd import __version__, control, events, plugins, sdnotify
from gatewayd import config as config_mod
from gatewayd.alarms import FIRE_MODE, OUTBOX_FULL, STATE_LOST
from gatewayd.alarms.keeper import AlarmKeeper
from gatewayd.audit import AuditLog
from gatewayd.commands import Gate
from gatewayd.commands.dispatch import CommandHandler
from gatewayd.commands.replay import ReplayCache
from gatewayd.commands.service import CommandService
from gatewayd.config import Config
from gatewayd.driver import BusConfig, Driver
from gatewayd.errors import GatewayError
from gatewayd.family import Family
from gatewayd.house import Household
from gatewayd.linkage import Actuator
from gatewayd.metrics.snapshot import BusFigures, Snapshot
from gatewayd.model import TICK, Alarm, Event, is_internal
from gatewayd.supervisor import Supervised
from gatewayd.uplink.link import MqttLink
from gatewayd.uplink.outbox import Outbox
from gatewayd.uplink.publisher import Publisher
from gatewayd.uplink.topics import Topics
from rules.engine import ClearAlarm, Engine, Outcome, World

log = logging.getLogger("gatewayd")

ACTION_TIMEOUT = 10.0  # s a driver gets for one action before the command times out
FLUSH_TIMEOUT = 5.0  # s to drain the outbox on shutdown


class DriverPort:
    """The DriverContext handed to one driver: its way into the runtime."""

    def __init__(self, gw: Gateway, bus: str) -> None:
        self.gateway_id = gw.config.gateway_id
        self.log = logging.getLogger(f"gatewayd.bus.{bus}")
        self._gw = gw

    def emit(self, event: Event) -> None:
        self._gw.handle_event(event)

    def publish_state(self, device: str, state: Mapping[str, Any]) -> None:
        self._gw.set_state(device, state)

    def publish_telemetry(self, device: str, values: Mapping[str, Any]) -> None:
        self._gw.publisher.telemetry(device, values)


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
        self.publisher = Publisher(self.topics, self.outbox, self.started, config.site, self.house)
        self.engine = Engine.from_config(config.rules)
        self._alarms_flush_pending = False
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
            self._device_actions(config),
            self.replay,
            config.commands_per_minute,
        )
        self.buses: dict[str, Supervised] = {}
        self._bus_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stop = asyncio.Event()
        self.link: MqttLink | None = None
        self.ready: Callable[[], None] = lambda: None
        #: Called with every event after the rules (the control socket's `events --follow`,
        #: metrics). Listeners must be quick and must not raise.
        self.listeners: list[Callable[[Event], None]] = []
        self.service = CommandService(
            self._driver_of, lambda a: self.engine.permit(a, self.world), self._unrecorded
        )
        self.actuator = Actuator(self, self._spawn)
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
        )
        self.publisher.bind(self.link, self.alarms.active, lambda: self.alarms.fire_mode)
        from gatewayd import metrics  # lazy: only a running daemon serves metrics

        metrics_handle: metrics.MetricsHandle | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                link_task = tg.create_task(self.link.run(), name="mqtt")
                services = [tg.create_task(self._ticks(), name="ticks")]
                outbox_task = tg.create_task(self.outbox.run(), name="outbox")
                self._start_buses(self.config)
                self._state_lost()
                self._devices_changed(set(self.keeper.recall("devices") or ()))
                self._running = True
                for damaged, path in self._damaged:  # found while starting
                    self._outbox_damaged(damaged, path)
                if sdnotify.enabled():  # the watchdog, and a STATUS= kept current
                    services.append(
                        tg.create_task(
                            sdnotify.report(
                                self.health, self.status_line, sdnotify.watchdog_interval()
                            ),
                            name="systemd",
                        )
                    )
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
                # After READY: prometheus_client's import (~70 ms on a Pi) never delays start-up.
                metrics_handle = metrics.attach(self)
                # What start-up built lives as long as the daemon: out of the collector's
                # sight, so full collections (pauses in a scrape or a burst) stay short.
                gc.freeze()
                await self._stop.wait()
                log.info("stopping")
                sdnotify.notify("STOPPING=1")
                await ctl.close()
                for task in services:
                    task.cancel()
                for task in self._bus_tasks.values():
                    task.cancel()
                await self._flush()
                await self.link.close(
                    final=(self.topics.status, self.publisher.status_payload(False))
                )
                link_task.cancel()
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

    @property
    def results(self) -> dict[str, int]:
        """Command results by code since start, for metrics."""
        return self.commands.results

    def health(self) -> str | None:
        """None when healthy, else why not: feeds the systemd watchdog."""
        for name, task in self._bus_tasks.items():
            if task.done():
                return f"supervisor of bus {name} has ended"
        return None

    def status_line(self) -> str:
        broker = (
            "broker connected"
            if self.link is not None and self.link.connected
            else "broker offline"
        )
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
        if (new.gateway_id, new.mqtt, new.data_dir, new.command_key) != (
            old.gateway_id,
            old.mqtt,
            old.data_dir,
            old.command_key,
        ):
            log.warning(
                "reload: [gateway], [mqtt] and [security] changes take effect after a restart"
            )
            new = _keep_identity(new, old)
        self.config = new
        self._devices_changed({d.id for d in old.devices})
        if new.rules != old.rules:  # unchanged rules keep what they know (timers, sightings)
            self.engine = Engine.from_config(new.rules)
        self.world.devices = {d.id: d for d in new.devices}
        self.gate.device_actions = self._device_actions(new)
        self.gate.limiter.capacity = float(new.commands_per_minute)
        same = {b.name for b in new.buses if _bus_of(new, b.name) == _bus_of(old, b.name)}
        stale = [self._bus_tasks.pop(n) for n in [n for n in self._bus_tasks if n not in same]]
        for task in stale:
            task.cancel()
            self.buses.pop(task.get_name().removeprefix("bus:"), None)
        self._spawn(self._restart_buses(stale, new, same), "reload")
        log.info(
            "reloaded %s: %d buses (%d restarted), %d devices",
            new.path,
            len(new.buses),
            len(new.buses) - len(same),
            len(new.devices),
        )
        return None

    async def _restart_buses(
        self, stale: list[asyncio.Task[None]], config: Config, skip: Collection[str]
    ) -> None:
        """Start the changed buses once their old drivers have let go of the ports: a new
        driver opening a port the old one still holds would fail and cry "offline"."""
        await asyncio.gather(*stale, return_exceptions=True)
        if self.config is config:  # not overtaken by a newer reload
            self._start_buses(config, skip=skip)

    def _start_buses(self, config: Config, skip: Collection[str] = ()) -> None:
        for bus in config.buses:
            if bus.name in skip:
                continue
            devices = list(config.devices_on(bus.name))
            sup = Supervised(bus.name, self._driver_factory(bus, devices), self._driver_failed)
            self.buses[bus.name] = sup
            self._bus_tasks[bus.name] = self._tg.create_task(sup.run(), name=f"bus:{bus.name}")

    def _driver_factory(self, bus: BusConfig, devices: list[Any]) -> Callable[[], Driver]:
        cls = plugins.load_driver(bus.driver)
        return lambda: cls(bus, devices, DriverPort(self, bus.name))

    def _driver_failed(self, bus: str, reason: str, restarts: int) -> None:
        self.handle_event(
            Event(
                self.config.gateway_id,
                events.DRIVER_FAILED,
                "warning",
                {"bus": bus, "reason": reason, "restarts": restarts},
            )
        )

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
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
        fire_mode = self.world.fire_mode = self.alarms.fire_mode
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

    def set_state(self, device: str, state: Mapping[str, Any]) -> None:
        self.world.states.setdefault(device, {}).update(state)
        self.publisher.state(device, state)

    def _alarms_changed(self) -> None:
        """Several alarm changes from one event go out as one retained message."""
        self.world.alarms = self.alarms.alarms
        if self._alarms_flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not running yet (start-up): publish now
            self.publisher.alarms_changed()
            return
        self._alarms_flush_pending = True
        loop.call_soon(self._flush_alarms)

    def _flush_alarms(self) -> None:
        self._alarms_flush_pending = False
        self.publisher.alarms_changed()

    # -- actions and commands ------------------------------------------------------------

    def family_of(self, device: str) -> Family | None:
        return self.house.family_of(device)

    def snapshot(self) -> Snapshot:
        """A read-only picture for one metrics scrape (taken on the event loop)."""
        buses = []
        for cfg in self.config.buses:
            sup = self.buses.get(cfg.name)
            driver = sup.driver if sup is not None else None
            buses.append(
                BusFigures(
                    cfg.name,
                    cfg.driver,
                    driver is not None,
                    sup.restarts if sup else 0,
                    _ask(driver, "stats"),
                    _ask(driver, "last_seen"),
                )
            )
        actions = self.engine.actions_by_rule
        return Snapshot(
            gateway_id=self.config.gateway_id,
            version=__version__,
            started=self.started,
            broker_connected=bool(self.link is not None and self.link.connected),
            broker_connects=self.link.connects if self.link is not None else 0,
            fire_mode=self.alarms.fire_mode,
            outbox=self.outbox.stats(),
            outbox_oldest_age=self.outbox.oldest_age(),
            command_results=dict(self.results),
            rule_actions={
                r: actions.get(r, 0) for r in {*(x.name for x in self.engine.rules), *actions}
            },
            buses=tuple(buses),
            devices=self.config.devices,
            states={d: dict(s) for d, s in self.world.states.items()},
            alarms=dict(self.alarms.alarms),
            gateway_state=dict(self.world.states.get(self.config.gateway_id, {})),
        )

    def _driver_of(self, device_id: str) -> tuple[str, Driver | None] | None:
        device = self.config.device(device_id)
        if device is None:
            return None
        sup = self.buses.get(device.bus)
        return device.bus, sup.driver if sup is not None else None

    def _unrecorded(self, device_id: str) -> str | None:
        """Why an access decision at ``device_id`` cannot be recorded now (None: it can)."""
        device = self.config.device(device_id)
        if device is None or not plugins.family(device.kind).audited or self.audit.healthy:
            return None
        return f"the audit log cannot be written ({self.audit.error})"

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.cmd:
            self._spawn(self.commands.handle(payload), "command")

    # -- what people may do from the platform or the local control socket ------------------

    def ack_alarm(
        self, alarm_id: str, user: str, note: str | None = None, source: str = "platform"
    ) -> Alarm:
        """Acknowledge an alarm; raises ``Refusal`` (code ``invalid``) for an unknown id."""
        alarm = self.keeper.ack(alarm_id, user, note)
        self._person(events.ALARM_ACKED, "info", alarm, user, note, source)
        return alarm

    def reset_alarm(
        self, alarm_id: str, user: str, note: str | None = None, source: str = "platform"
    ) -> Alarm:
        """Reset a latched alarm whose condition is over; raises ``Refusal`` saying why not
        (still active, not latched, unknown). Resetting fire mode relocks the escape doors."""
        alarm = self.keeper.reset(
            alarm_id, user, lambda a: self.engine.permit_reset(a, self.world), note
        )
        self._person(events.ALARM_RESET, "warning", alarm, user, note, source)
        if alarm.type == FIRE_MODE:
            self.world.fire_mode = self.alarms.fire_mode
            self.publisher.status_changed()
            data = {"user": user, "note": note, "source": source}
            self.handle_event(Event(self.config.gateway_id, events.FIRE_RESET, "warning", data))
        return alarm

    def fire_reset(self, user: str, note: str | None = None, source: str = "platform") -> bool:
        """End fire mode (a person has seen to the fire). False when not in fire mode;
        raises ``Refusal`` while a detector or pile still reports smoke or heat."""
        if not self.alarms.fire_mode:
            return False
        self.reset_alarm(self.alarms.fire_id, user, note, source)
        return True

    def _person(
        self, type_: str, severity: Any, alarm: Alarm, user: str, note: str | None, source: str
    ) -> None:
        action = type_.rsplit("_", 1)[-1]  # acked, reset
        self.audit.alarm(action, alarm.id, user, source, note)
        data = {"alarm": alarm.id, "type": alarm.type, "user": user, "note": note, "source": source}
        self.handle_event(Event(self.config.gateway_id, type_, severity, data))

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _device_actions(config: Config) -> dict[str, Mapping[str, Any]]:
        """Device id -> action -> the schema of its args: what the platform may ask of it."""
        families = plugins.families()
        return {d.id: families[d.kind].action_schemas() for d in config.devices}


def _ask(driver: Any, face: str) -> Mapping[str, Any]:
    """A driver's optional ``stats()`` or ``last_seen()``; a plugin's that fails costs its
    own figures (logged at debug), never the whole scrape."""
    method = getattr(driver, face, None)
    if not callable(method):
        return {}
    try:
        answer = method()
    except Exception as exc:  # noqa: BLE001 -- third-party code, called at every scrape
        log.debug("metrics: %s.%s() failed: %s", type(driver).__name__, face, exc)
        return {}
    return dict(answer) if isinstance(answer, Mapping) else {}


def _keep_identity(new: Config, old: Config) -> Config:
    from dataclasses import replace

    return replace(
        new,
        gateway_id=old.gateway_id,
        mqtt=old.mqtt,
        data_dir=old.data_dir,
        command_key=old.command_key,
    )


def _bus_of(config: Config, name: str) -> tuple[Any, ...] | None:
    """A bus's settings and its devices: what its driver was built from."""
    bus = next((b for b in config.buses if b.name == name), None)
    return None if bus is None else (bus, config.devices_on(name))
