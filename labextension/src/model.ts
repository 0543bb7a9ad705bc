/**
 * The live list of tasks: loaded once from `GET tasks`, then kept current by
 * the server's `events` stream. Panel, status bar and notifications all read it.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, ITask, TasksApi, isActive } from './api';

export type ConnectionState = 'connecting' | 'ready' | 'unavailable';

/** A task as it changed, as the events stream reported it. */
export interface ITaskChange {
  previous: ITask | undefined;
  task: ITask;
}

/** Most tasks loaded at once; the panel says so when there are more. */
const MAX_TASKS = 20_000;
const PAGE = 500;

function time(value: string | null): number {
  return value ? Date.parse(value) : 0;
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

  get activeCount(): number {
    let n = 0;
    for (const task of this._tasks.values()) {
      if (isActive(task)) {
        n++;
      }
    }
    return n;
  }

  /** Any change to the list or to the connection state. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** One task changed, as reported live by the events stream. */
  get taskChanged(): ISignal<this, ITaskChange> {
    return this._taskChanged;
  }

  get(id: string): ITask | undefined {
    return this._tasks.get(id);
  }

  /** Every task held, newest first. */
  sorted(): ITask[] {
    if (this._sorted === null) {
      this._sorted = [...this._tasks.values()].sort(
        (a, b) => time(b.created_at) - time(a.created_at) || (b.id < a.id ? -1 : 1)
      );
    }
    return this._sorted;
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
    this._sorted = null;
    performance.measure('raytha-nb:load', 'raytha-nb:load-start');
    this._setState('ready', '');
  }

  /** Apply a task the stream or an action returned. */
  upsert(task: ITask, live = true): void {
    const previous = this._tasks.get(task.id);
    if (previous && time(previous.updated_at) > time(task.updated_at)) {
      return;
    }
    this._tasks.set(task.id, task);
    this._streamed?.add(task.id);
    if (!previous) {
      this._sorted = null;
      this._total++;
    } else if (this._sorted) {
      // Same place in the order (created_at never changes): swap the object in.
      const at = this._sorted.indexOf(previous);
      if (at >= 0) {
        this._sorted[at] = task;
      } else {
        this._sorted = null;
      }
    }
    if (live) {
      this._taskChanged.emit({ previous, task });
    }
    this._emitSoon();
  }

  remove(id: string): void {
    if (this._tasks.delete(id)) {
      this._sorted = null;
      this._total = Math.max(0, this._total - 1);
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
    source.addEventListener('deleted', ev => {
      this.remove((JSON.parse((ev as MessageEvent).data) as { id: string }).id);
    });
    source.onopen = () => {
      // A reopen after a drop may have missed events: load the list again.
      if (opened) {
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

  private _setState(state: ConnectionState, message: string): void {
    if (state !== this._state || message !== this._message) {
      this._state = state;
      this._message = message;
      this._changed.emit();
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
      this._changed.emit();
    });
  }

  private _tasks = new Map<string, ITask>();
  /** Ids upserted while a reload runs (its pages may predate them). */
  private _streamed: Set<string> | null = null;
  private _sorted: ITask[] | null = null;
  private _total = 0;
  private _state: ConnectionState = 'connecting';
  private _message = '';
  private _source: EventSource | null = null;
  private _retryTimer = 0;
  private _retryDelay = 1000;
  private _pending = false;
  private _changed = new Signal<this, void>(this);
  private _taskChanged = new Signal<this, ITaskChange>(this);
}
