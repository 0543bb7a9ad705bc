/**
 * The live list of tasks: loaded once from `GET tasks`, then kept current by
 * the server's `events` stream. Panel, status bar and notifications all read it.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, ITask, ITaskProgress, TasksApi, isActive, isWaiting } from './api';

export type ConnectionState = 'connecting' | 'ready' | 'unavailable';

/** A task as it changed, as the events stream reported it. */
export interface ITaskChange {
  previous: ITask | undefined;
  task: ITask;
}

/**
 * What changed since the model last signalled, so views can keep what still holds.
 * Changes are coalesced: one per animation frame at most.
 */
export interface ITasksChange {
  /** Tasks were added or deleted, or the list was reloaded: membership and order may differ. */
  membership: boolean;
  /** Tasks replaced in place (same place in the order: created_at never changes). */
  updated: ReadonlySet<string>;
}

/** Most tasks loaded at once; the panel says so when there are more. */
const MAX_TASKS = 20_000;
const PAGE = 500;

function time(value: string | null): number {
  return value ? Date.parse(value) : 0;
}

/** Newest first; ties (same created_at) by id, descending. */
function before(aTime: number, aId: string, bTime: number, bId: string): boolean {
  return aTime > bTime || (aTime === bTime && aId > bId);
}

export class TaskModel {
  constructor(readonly api: TasksApi = new TasksApi()) {}

  get state(): ConnectionState {
    return this._state;
  }

  /** Why the server cannot be used, in words for the user. */
  get message(): string {
    return this._message;
  }

  /** Server-side total when the list was loaded (may exceed what is held). */
  get total(): number {
    return Math.max(this._total, this._tasks.size);
  }

  /** Tasks running or queued; kept as tasks come, change and go, not recounted. */
  get activeCount(): number {
    return this._active;
  }

  /** Of those, the tasks waiting for a time or for other tasks (scheduled, awaiting). */
  get waitingCount(): number {
    return this._waiting;
  }

  /** The active count changed (signalled with the change that moved it). */
  get activeCountChanged(): ISignal<this, void> {
    return this._activeCountChanged;
  }

  /** Any change to the list or to the connection state. */
  get changed(): ISignal<this, ITasksChange> {
    return this._changed;
  }

  /** One task changed, as reported live by the events stream. */
  get taskChanged(): ISignal<this, ITaskChange> {
    return this._taskChanged;
  }

  get(id: string): ITask | undefined {
    return this._tasks.get(id);
  }

  /**
   * The list is being loaded again (on connecting, and when the stream reopens after a
   * drop): other views that follow the stream reload what they hold too.
   */
  get reloading(): ISignal<this, void> {
    return this._reloading;
  }

  /**
   * Handle one more kind of event of the stream (e.g. `schedule`), on this stream and the
   * ones opened after it: one events connection serves every view.
   */
  listen(event: string, handler: (data: unknown) => void): void {
    this._listeners.push([event, handler]);
    this._source?.addEventListener(event, ev => handler(JSON.parse((ev as MessageEvent).data)));
  }

  /**
   * The ids of every task held, newest first. The array is the model's own: it
   * changes when membership changes (a change with `membership` set says so), and may
   * then still hold ids of deleted tasks until the next call.
   */
  order(): readonly string[] {
    if (this._order === null) {
      const keyed = [...this._tasks.values()].map(t => ({ id: t.id, t: time(t.created_at) }));
      keyed.sort((a, b) => (before(a.t, a.id, b.t, b.id) ? -1 : 1));
      this._order = keyed.map(k => k.id);
      this._compact = false;
    } else if (this._compact) {
      this._order = this._order.filter(id => this._tasks.has(id));
      this._compact = false;
    }
    return this._order;
  }

  /** Connect (or reconnect): open the stream, then load the list. */
  async connect(): Promise<void> {
    this._closeStream();
    window.clearTimeout(this._retryTimer);
    try {
      await this.api.status();
    } catch (err) {
      this._unavailable(err);
      return;
    }
    this._openStream();
    await this.reload();
  }

  /** Load the whole list again (after connecting or a gap in the stream). */
  async reload(): Promise<void> {
    // Marks let benchmarks (and the browser's profiler) see how long a load takes.
    performance.mark('raytha-nb:load-start');
    this._reloading.emit();
    const streamed = new Set<string>();
    this._streamed = streamed;
    const fresh = new Map<string, ITask>();
    let offset: number | null = 0;
    let total = 0;
    try {
      while (offset !== null && fresh.size < MAX_TASKS) {
        const page = await this.api.listTasks({ offset, limit: PAGE });
        total = page.total;
        for (const task of page.tasks) {
          fresh.set(task.id, task);
        }
        offset = page.tasks.length ? page.next_offset : null;
      }
    } catch (err) {
      this._unavailable(err);
      return;
    } finally {
      if (this._streamed === streamed) {
        this._streamed = null;
      }
    }
    // Events that arrived while loading may be newer than the page: keep those, and
    // tasks they created that the pages (read earlier) do not have yet.
    // (A task deleted meanwhile may come back until the next reload: harmless.)
    for (const [id, task] of fresh) {
      const held = this._tasks.get(id);
      if (held && time(held.updated_at) > time(task.updated_at)) {
        fresh.set(id, held);
      }
    }
    for (const id of streamed) {
      const held = this._tasks.get(id);
      if (held && !fresh.has(id)) {
        fresh.set(id, held);
        total++;
      }
    }
    this._tasks = fresh;
    this._total = total;
    this._order = null;
    this._active = 0;
    this._waiting = 0;
    for (const task of fresh.values()) {
      this._active += Number(isActive(task));
      this._waiting += Number(isWaiting(task));
    }
    this._membership = true;
    performance.measure('raytha-nb:load', 'raytha-nb:load-start');
    this._loaded = true;
    this._setState('ready', '');
    this._emitSoon(); // the state may not have changed, the list has
  }

  /** Apply a task the stream or an action returned. */
  upsert(task: ITask, live = true): void {
    const previous = this._tasks.get(task.id);
    if (previous && time(previous.updated_at) > time(task.updated_at)) {
      return;
    }
    if (!previous) {
      // Before it is held: compacting the order then drops an earlier, deleted copy.
      this._insert(task);
      this._total++;
      this._membership = true;
    } else if (previous.created_at !== task.created_at) {
      this._order = null; // never expected (created_at is set once), but then re-sort
      this._membership = true;
    } else {
      this._updated.add(task.id);
    }
    this._tasks.set(task.id, task);
    this._streamed?.add(task.id);
    this._active += Number(isActive(task)) - Number(previous !== undefined && isActive(previous));
    this._waiting +=
      Number(isWaiting(task)) - Number(previous !== undefined && isWaiting(previous));
    if (live) {
      this._taskChanged.emit({ previous, task });
    }
    this._emitSoon();
  }

  /**
   * Apply an `event: progress` to the task held. An id not held is ignored (its `task`
   * event or a reload brings it), and so is a stale one: older than what is held, or
   * for a task held as finished (progress is only sent while a task runs).
   */
  applyProgress(progress: ITaskProgress): void {
    const held = this._tasks.get(progress.id);
    if (!held || !isActive(held) || time(held.updated_at) > time(progress.updated_at)) {
      return;
    }
    this.upsert({
      ...held,
      task_step: progress.task_step,
      status_info: progress.status_info,
      percent_complete: progress.percent_complete,
      heartbeat_at: progress.heartbeat_at,
      updated_at: progress.updated_at
    });
  }

  remove(id: string): void {
    const task = this._tasks.get(id);
    if (task && this._tasks.delete(id)) {
      this._active -= Number(isActive(task));
      this._waiting -= Number(isWaiting(task));
      this._compact = true; // dropped from the order on its next read: one pass for many
      this._total = Math.max(0, this._total - 1);
      this._membership = true;
      this._emitSoon();
    }
  }

  /** Delete every finished task on the server. */
  async clearFinished(): Promise<number> {
    const { deleted } = await this.api.clearFinished();
    for (const task of [...this._tasks.values()]) {
      if (!isActive(task)) {
        this.remove(task.id);
      }
    }
    return deleted;
  }

  dispose(): void {
    this._closeStream();
    window.clearTimeout(this._retryTimer);
  }

  private _openStream(): void {
    const source = new EventSource(this.api.eventsUrl(), { withCredentials: true });
    let opened = false;
    source.addEventListener('task', ev => {
      this.upsert(JSON.parse((ev as MessageEvent).data) as ITask);
    });
    source.addEventListener('progress', ev => {
      this.applyProgress(JSON.parse((ev as MessageEvent).data) as ITaskProgress);
    });
    source.addEventListener('deleted', ev => {
      this.remove((JSON.parse((ev as MessageEvent).data) as { id: string }).id);
    });
    for (const [event, handler] of this._listeners) {
      source.addEventListener(event, ev => handler(JSON.parse((ev as MessageEvent).data)));
    }
    this._loaded = false;
    source.onopen = () => {
      // A reopen after a drop may have missed events, and so may a first open that comes
      // after the list was loaded (the stream was down meanwhile): load the list again.
      if (opened || this._loaded) {
        void this.reload();
      }
      opened = true;
      this._retryDelay = 1000;
    };
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (non-200 answer): find out why, retry later.
        this._closeStream();
        void this.api.status().then(
          () => this._scheduleRetry(),
          err => this._unavailable(err)
        );
      } else if (this._state === 'ready') {
        // The browser reconnects by itself; say so meanwhile.
        this._setState('unavailable', 'Lost the connection to the Jupyter server; reconnecting…');
      }
    };
    this._source = source;
  }

  private _closeStream(): void {
    this._source?.close();
    this._source = null;
  }

  private _unavailable(err: unknown): void {
    let message: string;
    if (err instanceof ApiError && err.notInstalled) {
      message =
        'The raytha_nb server extension is not available on this Jupyter server. ' +
        'Install raytha-nb in the environment that runs Jupyter and enable it with ' +
        '"jupyter server extension enable raytha_nb", then restart Jupyter.';
    } else if (err instanceof ApiError && err.unreachable) {
      message = 'The Jupyter server is unreachable. Retrying…';
    } else {
      message = `The task server answered with an error: ${
        err instanceof Error ? err.message : String(err)
      }`;
    }
    this._closeStream();
    this._setState('unavailable', message);
    this._scheduleRetry();
  }

  private _scheduleRetry(): void {
    window.clearTimeout(this._retryTimer);
    this._retryTimer = window.setTimeout(() => void this.connect(), this._retryDelay);
    this._retryDelay = Math.min(this._retryDelay * 2, 30_000);
  }

  /** Put a new task in its place in the order (when the order is built). */
  private _insert(task: ITask): void {
    if (this._order === null) {
      return;
    }
    const order = this.order() as string[];
    const t = time(task.created_at);
    // Binary search (log n lookups); a new task is usually the newest: index 0.
    let lo = 0;
    let hi = order.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const other = this._tasks.get(order[mid]);
      if (other && before(time(other.created_at), other.id, t, task.id)) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    order.splice(lo, 0, task.id);
  }

  private _setState(state: ConnectionState, message: string): void {
    if (state !== this._state || message !== this._message) {
      this._state = state;
      this._message = message;
      this._emit();
    }
  }

  /** Coalesce bursts of events into one change per animation frame. */
  private _emitSoon(): void {
    if (this._pending) {
      return;
    }
    this._pending = true;
    requestAnimationFrame(() => {
      this._pending = false;
      this._emit();
    });
  }

  /** Signal what changed since the last signal, and start collecting afresh. */
  private _emit(): void {
    const change: ITasksChange = { membership: this._membership, updated: this._updated };
    this._membership = false;
    this._updated = new Set();
    this._changed.emit(change);
    if (this._active !== this._signalledActive) {
      this._signalledActive = this._active;
      this._activeCountChanged.emit();
    }
  }

  private _tasks = new Map<string, ITask>();
  /** Ids upserted while a reload runs (its pages may predate them). */
  private _streamed: Set<string> | null = null;
  /** Ids newest first, built on first use; null: sort again. */
  private _order: string[] | null = null;
  /** Tasks were deleted: the order still lists them. */
  private _compact = false;
  private _active = 0;
  private _waiting = 0;
  private _signalledActive = 0;
  /** Not yet signalled: membership changed, tasks replaced in place. */
  private _membership = false;
  private _updated = new Set<string>();
  private _total = 0;
  private _state: ConnectionState = 'connecting';
  private _message = '';
  private _source: EventSource | null = null;
  private _retryTimer = 0;
  private _retryDelay = 1000;
  private _pending = false;
  /** A load completed since the stream was opened. */
  private _loaded = false;
  private _changed = new Signal<this, ITasksChange>(this);
  private _activeCountChanged = new Signal<this, void>(this);
  private _taskChanged = new Signal<this, ITaskChange>(this);
  private _reloading = new Signal<this, void>(this);
  private _listeners: [string, (data: unknown) => void][] = [];
}
