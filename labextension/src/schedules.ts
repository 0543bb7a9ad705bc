/**
 * The live list of schedules: `GET schedules` whenever the task list loads (on connecting
 * and after a gap in the stream), then the `schedule` / `schedule-deleted` events of the
 * task model's one events stream.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { ApiError, ISchedule, ITask } from './api';
import { TaskModel } from './model';

/** `unsupported`: the server's raytha_nb has no schedules (an older version). */
export type SchedulesState = 'loading' | 'ready' | 'unsupported' | 'error';

export class ScheduleModel {
  constructor(readonly tasks: TaskModel) {
    tasks.listen('schedule', data => this.upsert(data as ISchedule));
    tasks.listen('schedule-deleted', data => this.remove((data as { id: string }).id));
    tasks.reloading.connect(() => void this.reload());
  }

  get state(): SchedulesState {
    return this._state;
  }

  /** Why the schedules cannot be shown, in words for the user. */
  get message(): string {
    return this._message;
  }

  /** Schedules were loaded, added, changed or deleted. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get(id: string): ISchedule | undefined {
    return this._schedules.get(id);
  }

  /** Every schedule, by name (a stable order: firing does not move a row). */
  list(): ISchedule[] {
    return [...this._schedules.values()].sort(
      (a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id)
    );
  }

  get size(): number {
    return this._schedules.size;
  }

  async reload(): Promise<void> {
    const streamed = new Map<string, ISchedule | null>();
    this._streamed = streamed;
    let loaded: ISchedule[];
    try {
      loaded = (await this.tasks.api.listSchedules()).schedules;
    } catch (err) {
      if (err instanceof ApiError && err.notInstalled) {
        this._set(
          'unsupported',
          "This Jupyter server's raytha_nb has no schedules: upgrade raytha-nb where Jupyter runs."
        );
      } else {
        this._set('error', `Could not load the schedules: ${err instanceof Error ? err.message : err}`);
      }
      return;
    } finally {
      if (this._streamed === streamed) {
        this._streamed = null;
      }
    }
    // Events that came while loading are newer than the answer (it was read before them).
    const fresh = new Map(loaded.map(s => [s.id, s]));
    for (const [id, schedule] of streamed) {
      if (schedule) {
        fresh.set(id, schedule);
      } else {
        fresh.delete(id);
      }
    }
    this._schedules = fresh;
    this._set('ready', '');
    this._changed.emit();
  }

  upsert(schedule: ISchedule): void {
    this._schedules.set(schedule.id, schedule);
    this._streamed?.set(schedule.id, schedule);
    this._changed.emit();
  }

  remove(id: string): void {
    this._streamed?.set(id, null);
    if (this._schedules.delete(id)) {
      this._changed.emit();
    }
  }

  async setPaused(id: string, paused: boolean): Promise<void> {
    this.upsert(await this.tasks.api.setPaused(id, paused));
  }

  /** Run it now: the new run goes into the task list at once (its events follow). */
  async trigger(id: string): Promise<ITask> {
    const { schedule, task } = await this.tasks.api.triggerSchedule(id);
    this.upsert(schedule);
    this.tasks.upsert(task, false);
    return task;
  }

  async delete(id: string): Promise<void> {
    await this.tasks.api.deleteSchedule(id);
    this.remove(id);
  }

  private _set(state: SchedulesState, message: string): void {
    const moved = state !== this._state || message !== this._message;
    this._state = state;
    this._message = message;
    if (moved) {
      this._changed.emit();
    }
  }

  private _schedules = new Map<string, ISchedule>();
  /** Changes streamed while a load runs (null: deleted); they win over its answer. */
  private _streamed: Map<string, ISchedule | null> | null = null;
  private _state: SchedulesState = 'loading';
  private _message = '';
  private _changed = new Signal<this, void>(this);
}
