/**
 * One task in full: state, args, result, error with traceback, and its log,
 * tailing live (polling `logs?since=`) while the task runs.
 */
import { IResultPreview, ITask, isActive, isTable } from './api';
import { TaskActions, actionButtons } from './actions';
import {
  STATUS_GLYPH,
  attemptText,
  basename,
  byteSize,
  count,
  el,
  formatSeconds,
  durationOf,
  localTime,
  percentText,
  runsOn,
  waiting
} from './format';
import { TaskModel } from './model';

/** What the details need of the schedules: a run's schedule by name, and its other runs. */
export interface IScheduleLinks {
  scheduleName: (id: string) => string | undefined;
  showRuns: (id: string) => void;
}

const LOG_POLL_MS = 1000;
/** Most log lines kept in the view; older ones are dropped from the top. */
const LOG_MAX_LINES = 5000;

export class TaskDetails {
  readonly node = el('div', 'jp-RaythaDetails');

  constructor(
    readonly model: TaskModel,
    readonly actions: TaskActions,
    onBack: () => void,
    /** Open another task's details (a parent, the task retried, the group). */
    private readonly _open: (id: string) => void = () => undefined,
    private readonly _schedules: IScheduleLinks = {
      scheduleName: () => undefined,
      showRuns: () => undefined
    }
  ) {
    const back = el('button', 'jp-RaythaDetails-back', '← All tasks');
    back.addEventListener('click', onBack);
    this._head = el('div', 'jp-RaythaDetails-head');
    this._buttons = el('div', 'jp-RaythaDetails-actions');
    this._fields = el('dl', 'jp-RaythaDetails-fields');
    this._bar = el('div', 'jp-RaythaTask-bar');
    this._fill = el('div', 'jp-RaythaTask-fill');
    this._bar.append(this._fill);
    this._args = el('pre', 'jp-RaythaDetails-args');
    this._result = el('pre', 'jp-RaythaDetails-result');
    this._preview = el('div', 'jp-RaythaDetails-preview');
    this._preview.hidden = true;
    this._resultLinks = el('div', 'jp-RaythaDetails-actions jp-RaythaDetails-resultLinks');
    this._resultLinks.hidden = true;
    this._error = el('pre', 'jp-RaythaDetails-traceback');
    this._log = el('pre', 'jp-RaythaDetails-log');
    this._sections = {
      args: section('Arguments', this._args),
      result: section('Result', this._resultLinks, this._result, this._preview),
      error: section('Error', this._error),
      log: section('Log', this._log)
    };
    this.node.append(
      back,
      this._head,
      this._bar,
      this._buttons,
      this._fields,
      this._sections.error,
      this._sections.args,
      this._sections.result,
      this._sections.log
    );
  }

  show(): void {
    this.node.hidden = false;
  }

  hide(): void {
    this.node.hidden = true;
  }

  /** Switch to another task (or none), restarting the log tail. */
  setTask(id: string | null): void {
    window.clearTimeout(this._pollTimer);
    this._id = id;
    this._shown = null;
    this._lastSeq = 0;
    this._log.textContent = '';
    this._logLines = 0;
    this._tailAfterEnd = true;
    this._generation++;
    this._previewOf = null;
    this._preview.replaceChildren();
    this._preview.hidden = true;
    if (id) {
      this.refresh();
      void this._pollLogs(this._generation);
    }
  }

  /** Rebuild the buttons if what they depend on (e.g. its kernel running) changed. */
  refreshActions(): void {
    const task = this._id ? this.model.get(this._id) : undefined;
    if (task) {
      const actions = this.actions.key(task);
      if (actions !== this._actionsKey) {
        this._actionsKey = actions;
        this._buttons.replaceChildren(...actionButtons(this.actions.for(task)));
      }
    }
  }

  /** Schedules loaded or changed: a run's "Schedule" row may now have its name. */
  scheduleChanged(): void {
    if (this._shown?.schedule_id) {
      this._shown = null;
      this.refresh();
    }
  }

  /** Redraw from the model's current state of the task. */
  refresh(): void {
    if (!this._id) {
      return;
    }
    const task = this.model.get(this._id);
    if (!task) {
      // A task just retried may reach the panel moments after its id does.
      this._head.textContent = this._shown
        ? `Task ${this._id} was deleted.`
        : `Waiting for task ${this._id}…`;
      this._shown = null;
      this._buttons.replaceChildren();
      this._actionsKey = '';
      return;
    }
    const shown = this._shown;
    if (task === shown) {
      return;
    }
    this._shown = task;
    if (shown && progressOnly(shown, task)) {
      this._showProgress(task);
      return;
    }
    this.node.dataset.status = task.status;
    this.node.dataset.taskId = task.id;
    this._head.replaceChildren(
      el('span', 'jp-RaythaTask-glyph', STATUS_GLYPH[task.status]),
      el('span', 'jp-RaythaDetails-name', task.name),
      el('span', 'jp-RaythaDetails-status', task.status)
    );
    this._head.dataset.status = task.status;
    this.refreshActions();
    const rows: [string, string | Node[]][] = [
      ['Progress', ''],
      ['Info', ''],
      ['Waiting', ''],
      ['Task', task.task],
      ['Id', task.id],
      ['Notebook', task.notebook || '—'],
      ['Kernel', kernelLabel(task)],
      // Not for tasks of older kernels, whose records do not say.
      ...(runsOn(task) ? [['Runs on', runsOn(task)] as [string, string]] : []),
      ...this._flowRows(task),
      ['Created', localTime(task.created_at)],
      ['Started', localTime(task.started_at)],
      ['Finished', localTime(task.completed_at)],
      ['Duration', '']
    ];
    const values = rows.map(([k, v]) => {
      const dd = typeof v === 'string' ? el('dd', '', v) : el('dd');
      if (typeof v !== 'string') {
        dd.append(...v);
      }
      dd.dataset.field = k;
      return dd;
    });
    values[6].title = task.kernel_id ?? ''; // the Kernel row: its full id
    [this._progress, this._info, this._waiting] = values;
    this._duration = values[values.length - 1];
    this._fields.replaceChildren(
      ...rows.flatMap(([k], i) => {
        const dt = el('dt', '', k);
        dt.dataset.field = k;
        return [dt, values[i]];
      })
    );
    this._showProgress(task);
    const cell = cellSource(task);
    this._sections.args.querySelector('h3')!.textContent = cell === null ? 'Arguments' : 'Cell';
    this._args.classList.toggle('jp-mod-code', cell !== null);
    this._args.textContent = cell ?? JSON.stringify(task.args ?? null, null, 2);
    this._sections.result.hidden = task.status !== 'complete';
    this._result.textContent = describeResult(task);
    const links = this.actions.resultActions(task);
    this._resultLinks.hidden = !links.length;
    this._resultLinks.replaceChildren(...actionButtons(links));
    if (isTable(task) && this._previewOf !== task.id) {
      this._previewOf = task.id;
      void this._showPreview(task.id, this._generation);
    }
    const failed = Boolean(task.error_type || task.error_message || task.traceback);
    this._sections.error.hidden = !failed;
    this._error.textContent = failed
      ? task.traceback || `${task.error_type ?? 'Error'}: ${task.error_message ?? ''}`
      : '';
    // The exception line (and the user's own frame) are at the end: show them.
    this._error.scrollTop = this._error.scrollHeight;
  }

  /** Attempt, Scheduled for, Waits for, Retry of, Group, Checkpoint: those that apply. */
  private _flowRows(task: ITask): [string, string | Node[]][] {
    const rows: [string, string | Node[]][] = [];
    if (task.schedule_id) {
      rows.push(['Schedule', [this._scheduleLink(task.schedule_id)]]);
    }
    const attempt = attemptText(task);
    if (attempt) {
      rows.push(['Attempt', attempt.replace(/^attempt /, '')]);
    }
    if (task.scheduled_for) {
      rows.push(['Scheduled for', localTime(task.scheduled_for)]);
    }
    const parents = task.depends_on ?? [];
    if (parents.length) {
      rows.push(['Waits for', joined(parents.map(id => this._link(id)))]);
    }
    if (task.retry_of) {
      rows.push(['Retry of', [this._link(task.retry_of)]]);
    }
    if (task.group_id) {
      rows.push(['Group', [this._link(task.group_id)]]);
    }
    if (task.checkpoint !== null && task.checkpoint !== undefined) {
      const text = JSON.stringify(task.checkpoint);
      rows.push(['Checkpoint', text.length > 120 ? `${text.slice(0, 119)}…` : text]);
    }
    return rows;
  }

  /** A run's schedule, by name: it shows that schedule's runs in the list. */
  private _scheduleLink(id: string): HTMLElement {
    const name = this._schedules.scheduleName(id);
    const link = el('a', 'jp-RaythaDetails-link', name ?? id.slice(0, 8));
    link.href = '#';
    link.dataset.scheduleId = id;
    link.title = `Show the runs of ${name ? `"${name}"` : 'this schedule'} · ${id}`;
    link.addEventListener('click', ev => {
      ev.preventDefault();
      this._schedules.showRuns(id);
    });
    return link;
  }

  /** A link to another task's details: its name (and status) when the panel holds it. */
  private _link(id: string): HTMLElement {
    const other = this.model.get(id);
    const link = el('a', 'jp-RaythaDetails-link', other ? other.name : id.slice(0, 8));
    link.href = '#';
    link.dataset.taskId = id;
    link.title = other ? `${other.name} (${other.status}) · ${id}` : id;
    link.addEventListener('click', ev => {
      ev.preventDefault();
      this._open(id);
    });
    if (other) {
      const state = el('span', 'jp-RaythaDetails-linkStatus', ` (${other.status})`);
      const box = el('span');
      box.append(link, state);
      return box;
    }
    return link;
  }

  /** Once a second while it waits: "starts in 12 s" counts down. */
  tick(): void {
    const task = this._id ? this.model.get(this._id) : undefined;
    if (task && this._shown === task) {
      this._showProgress(task);
    }
  }

  /** Fetch and draw the first rows of a table result (once per task shown). */
  private async _showPreview(id: string, generation: number): Promise<void> {
    let table: IResultPreview;
    try {
      table = await this.model.api.preview(id);
    } catch (err) {
      if (generation === this._generation) {
        this._preview.hidden = false;
        this._preview.replaceChildren(
          el('div', 'jp-RaythaDetails-previewNote', `No preview: ${err instanceof Error ? err.message : err}`)
        );
      }
      return;
    }
    if (generation !== this._generation) {
      return;
    }
    const head = el('tr');
    head.append(...table.columns.map(c => {
      const th = el('th', '', c.name);
      th.title = c.type;
      return th;
    }));
    const body = el('tbody');
    for (const values of table.rows) {
      const tr = el('tr');
      tr.append(...values.map(v => el('td', '', v === null ? '' : String(v))));
      body.append(tr);
    }
    const grid = el('table', 'jp-RaythaDetails-table');
    const thead = el('thead');
    thead.append(head);
    grid.append(thead, body);
    const scroll = el('div', 'jp-RaythaDetails-tableScroll');
    scroll.append(grid);
    const rows = count(table.total_rows, 'row');
    const cols = count(table.columns.length, 'column');
    const note = el(
      'div',
      'jp-RaythaDetails-previewNote',
      table.shown < table.total_rows
        ? `First ${table.shown} of ${rows} · ${cols}`
        : `${rows} · ${cols}`
    );
    this._preview.replaceChildren(note, scroll);
    this._preview.hidden = false;
  }

  /** The parts a progress event moves: bar, percent and step, info (and the duration so far). */
  private _showProgress(task: ITask): void {
    const duration = durationOf(task);
    this._duration.textContent = duration === null ? '—' : formatSeconds(duration);
    this._fill.style.width = `${Math.max(0, Math.min(100, task.percent_complete))}%`;
    this._progress.textContent = `${percentText(task)}${task.task_step ? ` · step ${task.task_step}` : ''}`;
    this._info.textContent = task.status_info || '—';
    const waits = waiting(task);
    this._waiting.textContent = waits || '—';
    this._waiting.hidden = !waits;
    (this._waiting.previousElementSibling as HTMLElement | null)?.toggleAttribute('hidden', !waits);
  }

  /** Fetch new log lines; again in a second while the task runs. */
  private async _pollLogs(generation: number): Promise<void> {
    const id = this._id;
    if (!id) {
      return;
    }
    try {
      const { lines, last_seq } = await this.model.api.logs(id, this._lastSeq);
      if (generation !== this._generation) {
        return;
      }
      if (lines.length) {
        const stick = this._log.scrollTop + this._log.clientHeight >= this._log.scrollHeight - 4;
        this._log.append(
          document.createTextNode(lines.map(l => l.text.replace(/\n$/, '')).join('\n') + '\n')
        );
        this._logLines += lines.length;
        if (this._logLines > LOG_MAX_LINES) {
          this._trimLog();
        }
        if (stick) {
          this._log.scrollTop = this._log.scrollHeight;
        }
      }
      this._lastSeq = Math.max(this._lastSeq, last_seq);
      this._log.dataset.empty = String(!this._log.textContent);
    } catch {
      // Shown by the panel's connection banner; keep trying while it runs.
    }
    if (generation !== this._generation) {
      return;
    }
    const task = this.model.get(id);
    const running = task ? isActive(task) : false;
    // One more fetch after it finishes catches the last lines.
    if (running || this._tailAfterEnd) {
      this._tailAfterEnd = running;
      this._pollTimer = window.setTimeout(() => void this._pollLogs(generation), LOG_POLL_MS);
    } else {
      this._tailAfterEnd = true;
    }
  }

  private _trimLog(): void {
    const text = this._log.textContent || '';
    const lines = text.split('\n');
    const kept = lines.slice(lines.length - LOG_MAX_LINES);
    this._log.textContent = kept.join('\n');
    this._logLines = kept.length;
  }

  private _id: string | null = null;
  /** The version of the task drawn (null: draw it all). */
  private _shown: ITask | null = null;
  private _progress = el('dd');
  private _info = el('dd');
  private _waiting = el('dd');
  private _duration = el('dd');
  private _actionsKey = '';
  private _lastSeq = 0;
  private _logLines = 0;
  private _generation = 0;
  private _pollTimer = 0;
  private _tailAfterEnd = true;
  private _head: HTMLElement;
  private _buttons: HTMLElement;
  private _fields: HTMLElement;
  private _bar: HTMLElement;
  private _fill: HTMLElement;
  private _args: HTMLElement;
  private _result: HTMLElement;
  private _preview: HTMLElement;
  /** A notebook job's executed notebook: Open, Download HTML. */
  private _resultLinks: HTMLElement;
  /** The task whose preview is shown or on its way. */
  private _previewOf: string | null = null;
  private _error: HTMLElement;
  private _log: HTMLElement;
  private _sections: Record<'args' | 'result' | 'error' | 'log', HTMLElement>;
}

/** Fields a progress event moves (`event: progress` of the events stream). */
const PROGRESS_FIELDS = new Set<string>([
  'task_step',
  'status_info',
  'percent_complete',
  'heartbeat_at',
  'updated_at'
]);

/** Whether `b` differs from `a` only in progress (a delta applied to the same record). */
function progressOnly(a: ITask, b: ITask): boolean {
  for (const key of Object.keys(b) as (keyof ITask)[]) {
    if (!PROGRESS_FIELDS.has(key) && a[key] !== b[key]) {
      return false;
    }
  }
  return true;
}

/** Nodes with ", " between them. */
function joined(nodes: HTMLElement[]): Node[] {
  return nodes.flatMap((n, i) => (i ? [document.createTextNode(', '), n] : [n]));
}

function section(title: string, ...body: HTMLElement[]): HTMLElement {
  const node = el('section', 'jp-RaythaDetails-section');
  node.append(el('h3', '', title), ...body);
  return node;
}

/** A `%%background` task's cell source, shown as code rather than as JSON text. */
function cellSource(task: ITask): string | null {
  const args = task.args as { code?: unknown } | null;
  return task.task === '%%background' && args && typeof args.code === 'string' ? args.code : null;
}

/** "analysis.ipynb · 1a2b3c4d": which notebook's kernel, and enough of its id to tell two apart. */
function kernelLabel(task: ITask): string {
  if (!task.kernel_id) {
    return '—';
  }
  const short = task.kernel_id.slice(0, 8);
  const where = basename(task.notebook);
  return where ? `${where} · ${short}` : short;
}

function describeResult(task: ITask): string {
  if (task.result_kind === null || task.result_kind === 'json') {
    return JSON.stringify(task.result ?? null, null, 2);
  }
  const descriptor = (task.result ?? {}) as Record<string, unknown>;
  const parts = [`${task.result_kind} result`];
  for (const key of ['path', 'rows', 'bytes', 'media_type', 'type', 'repr']) {
    if (descriptor[key] !== undefined) {
      const value = descriptor[key];
      parts.push(
        key === 'bytes' && typeof value === 'number'
          ? `size: ${byteSize(value)} (${count(value, 'byte')})`
          : `${key}: ${String(value)}`
      );
    }
  }
  return parts.join('\n');
}
