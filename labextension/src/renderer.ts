/**
 * A task's cell output, rendered from `application/vnd.raytha-nb.task+json`: live from
 * the shared task model (the panel's one events stream), so it stays truthful across
 * kernel restarts and shows how the task ended when the notebook is reopened. Without
 * the server it shows the state saved with the notebook and says so.
 */
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { ApiError, FILE_RESULT_KINDS, ILogLine, ITask, isActive, isTable } from './api';
import {
  count,
  el,
  localTime,
  logTitle,
  percentText,
  timing,
  whereText
} from './format';
import { ITasksChange, TaskModel } from './model';

export const TASK_MIME = 'application/vnd.raytha-nb.task+json';

/** Ahead of the ipywidget's renderer (rank -10), so Lab picks this one. */
export const TASK_MIME_RANK = -20;

const LOG_POLL_MS = 1000;
const LOG_MAX_LINES = 2000;

/** A table result's first rows, as the kernel saved them (cells as text). */
interface ISavedPreview {
  columns: string[];
  rows: string[][];
  total_rows: number | null;
  total_columns: number | null;
  library: string | null;
}

/** What the kernel puts under `TASK_MIME` (`raytha_nb/_task_view.py: payload`). */
export interface ISavedTask {
  version: number;
  job_id: string;
  task: ITask;
  result_text: string;
  preview: ISavedPreview | null;
  result_url: string | null;
  saved_at: string;
}

/** Where the state shown came from. */
type Source = 'live' | 'saved' | 'not-stored';

export class TaskOutput extends Widget implements IRenderMime.IRenderer {
  constructor(readonly model: TaskModel) {
    super();
    this.addClass('jp-RaythaCell');
    this.addClass('raytha-nb-task'); // the ipywidget's class: one selector for either view
    this._name = el('b', 'jp-RaythaCell-name');
    this._status = el('span', 'jp-RaythaCell-status');
    this._id = el('span', 'jp-RaythaCell-id');
    const head = el('div', 'jp-RaythaCell-head');
    head.append(this._name, ' ', this._status, ' ', this._id);
    this._bar = el('div', 'jp-RaythaCell-bar');
    this._fill = el('div', 'jp-RaythaCell-fill');
    this._bar.append(this._fill);
    this._percent = el('b', 'jp-RaythaCell-percent');
    this._timing = el('span', 'jp-RaythaCell-timing');
    this._cancel = el('button', 'jp-RaythaCell-cancel jp-mod-styled', 'Cancel');
    this._cancel.title = 'Cancel this background task';
    this._cancel.addEventListener('click', () => void this._onCancel());
    const line = el('div', 'jp-RaythaCell-line');
    line.append(this._bar, this._percent, this._timing, this._cancel);
    this._info = el('div', 'jp-RaythaCell-info');
    this._note = el('div', 'jp-RaythaCell-note');
    this._outcome = el('div', 'jp-RaythaCell-outcome');
    this._log = el('details', 'jp-RaythaCell-log');
    this._logTitle = el('summary', '', 'Log');
    this._logText = el('pre', 'jp-RaythaCell-logText');
    this._log.append(this._logTitle, this._logText);
    this._log.addEventListener('toggle', () => void this._pollLogs());
    this.node.append(head, line, this._info, this._note, this._outcome, this._log);
    model.changed.connect(this._onModelChanged, this);
  }

  renderModel(mimeModel: IRenderMime.IMimeModel): Promise<void> {
    this._saved = mimeModel.data[TASK_MIME] as unknown as ISavedTask;
    this.node.dataset.jobId = this._saved.job_id;
    this._outcomeKey = ''; // a display update may bring what the live task lacks
    this._render();
    return Promise.resolve();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.model.changed.disconnect(this._onModelChanged, this);
    window.clearInterval(this._ticker);
    window.clearTimeout(this._logTimer);
    super.dispose();
  }

  private _onModelChanged(_: TaskModel, change: ITasksChange): void {
    const id = this._saved?.job_id;
    if (
      id &&
      (change.membership || change.updated.has(id) || this.model.state !== this._renderedState)
    ) {
      this._render();
    }
  }

  /** The live task if the server has it, else the state saved in the notebook. */
  private _current(): { task: ITask; source: Source } {
    const saved = this._saved!;
    const live = this.model.state === 'ready' ? this.model.get(saved.job_id) : undefined;
    if (live) {
      return { task: live, source: 'live' };
    }
    if (this.model.state === 'ready' && !this._looked) {
      this._looked = true;
      void this._lookUp(saved.job_id);
    }
    return { task: saved.task, source: this._notStored ? 'not-stored' : 'saved' };
  }

  /** A task the model does not hold (yet): ask the server once. */
  private async _lookUp(id: string): Promise<void> {
    try {
      this.model.upsert(await this.model.api.getTask(id), false);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404 && err.fromApi) {
        if (isActive(this._saved!.task) && ++this._lookups < 5) {
          // Just started: its kernel's first publish may not have reached the server yet.
          window.setTimeout(() => {
            this._looked = false;
            this._render();
          }, 2000);
          return;
        }
        this._notStored = true;
      }
    }
    this._render();
  }

  private _render(): void {
    if (!this._saved || this.isDisposed) {
      return;
    }
    this._renderedState = this.model.state;
    const { task, source } = this._current();
    const active = isActive(task);
    this.node.dataset.status = task.status;
    this.node.dataset.source = source;
    this._name.textContent = task.name;
    this._status.textContent = task.status;
    this._id.textContent = task.id;
    this._fill.style.width = `${Math.max(0, Math.min(task.percent_complete, 100))}%`;
    this._percent.textContent = percentText(task);
    this._timing.textContent = timing(task);
    const info: string[] = [];
    if (task.task_step) {
      info.push(`step ${task.task_step}`);
    }
    if (task.status_info) {
      info.push(task.status_info);
    }
    // Where it runs comes last and quieter, as in the widget's details line.
    const where = whereText(task);
    const parts: (string | HTMLElement)[] = info.length ? [info.join(' · ')] : [];
    if (where) {
      parts.push(...(info.length ? [' · '] : []), el('span', 'jp-RaythaCell-where', where));
    }
    const infoKey = `${info.join(' · ')}|${where}`;
    if (infoKey !== this._infoKey) {
      this._infoKey = infoKey;
      this._info.replaceChildren(...parts);
    }
    this._info.hidden = !parts.length;

    this._note.textContent = this._noteText(task, source);
    this._note.hidden = !this._note.textContent;
    // Cancel only what can still be cancelled, through the server.
    this._cancel.hidden = !(source === 'live' && active);
    if (task.cancel_requested && !this._cancelFailed) {
      this._cancel.disabled = true;
      this._cancel.textContent = 'Cancelling…';
    }
    this._log.hidden = source !== 'live';
    this._renderOutcome(task, source);
    this._tick(active && source === 'live');
  }

  private _noteText(task: ITask, source: Source): string {
    const saved = `the state saved with the notebook (${localTime(this._saved!.saved_at)})`;
    if (source === 'not-stored') {
      return `Not in this Jupyter server's task store (it ran without the server, or in another store): showing ${saved}.`;
    }
    if (source === 'saved' && this.model.state === 'unavailable') {
      return `No live source: ${this.model.message} Showing ${saved}${
        isActive(task) ? '; the task may have ended since' : ''
      }.`;
    }
    return '';
  }

  private _renderOutcome(task: ITask, source: Source): void {
    const key = `${task.id}:${task.status}:${source}`;
    if (key === this._outcomeKey) {
      return;
    }
    this._outcomeKey = key;
    const generation = ++this._outcomeGen;
    this._outcome.replaceChildren();
    if (task.status === 'error') {
      const text = task.traceback || `${task.error_type}: ${task.error_message}`;
      this._outcome.append(el('pre', 'jp-RaythaCell-traceback', text));
      return;
    }
    if (task.status !== 'complete') {
      return;
    }
    const saved = this._saved!;
    const savedDone = saved.task.status === 'complete';
    if (savedDone && saved.preview) {
      this._outcome.append(previewTable(saved.preview));
    } else if (source === 'live' && isTable(task)) {
      void this._fetchPreview(task, generation);
    } else {
      const text = savedDone ? saved.result_text : shortResult(task);
      if (text) {
        const line = el('div', 'jp-RaythaCell-result');
        line.append(el('b', '', 'result'), ': ', el('code', '', text));
        this._outcome.append(line);
      }
    }
    if (source === 'live' && task.result_kind && FILE_RESULT_KINDS.has(task.result_kind)) {
      const stored = (task.result ?? {}) as Record<string, unknown>;
      const name = String(stored.filename ?? `${task.name}.${task.result_kind}`);
      const link = el('a', 'jp-RaythaCell-download', `⬇ Download ${name}`);
      link.href = this.model.api.resultUrl(task);
      link.download = name;
      this._outcome.append(link);
    }
  }

  /** A table result finished while this kernel was not saving it: the server's preview. */
  private async _fetchPreview(task: ITask, generation: number): Promise<void> {
    try {
      const p = await this.model.api.preview(task.id, 10);
      if (this._outcomeGen === generation) {
        this._outcome.prepend(
          previewTable({
            columns: p.columns.map(c => c.name),
            rows: p.rows.map(r => r.map(v => (v === null ? '' : String(v)))),
            total_rows: p.total_rows,
            total_columns: p.columns.length,
            library: null
          })
        );
      }
    } catch (err) {
      console.warn('raytha-nb: no preview of the result', err);
    }
  }

  private async _onCancel(): Promise<void> {
    const id = this._saved!.job_id;
    this._cancel.disabled = true;
    this._cancel.textContent = 'Cancelling…';
    try {
      const { task } = await this.model.api.cancel(id);
      this._cancelFailed = false;
      this.model.upsert(task);
    } catch (err) {
      this._cancelFailed = true;
      this._cancel.disabled = false;
      this._cancel.textContent = 'Cancel failed: retry';
      this._cancel.title = `Could not cancel: ${err instanceof Error ? err.message : String(err)}`;
    }
  }

  /** While the log is open, tail it (once more after the task ended). */
  private async _pollLogs(): Promise<void> {
    window.clearTimeout(this._logTimer);
    if (!this._log.open || !this._saved || this.isDisposed) {
      return;
    }
    const { task } = this._current();
    try {
      const { lines } = await this.model.api.logs(task.id, this._logSeq);
      this._appendLog(lines);
    } catch (err) {
      this._logTitle.textContent = `Log (could not load: ${err instanceof Error ? err.message : err})`;
    }
    if (isActive(task)) {
      this._logTimer = window.setTimeout(() => void this._pollLogs(), LOG_POLL_MS);
    }
  }

  private _appendLog(lines: ILogLine[]): void {
    if (lines.length) {
      this._logSeq = lines[lines.length - 1].seq;
      this._logCount += lines.length;
      this._logLines.push(...lines.map(l => l.text));
      if (this._logLines.length > LOG_MAX_LINES) {
        this._logLines.splice(0, this._logLines.length - LOG_MAX_LINES);
      }
      this._logText.textContent = this._logLines.join('\n');
    }
    this._logTitle.textContent = logTitle(this._logCount, !isActive(this._current().task));
  }

  /** Redraw the elapsed time once a second while the task runs. */
  private _tick(on: boolean): void {
    if (on && !this._ticker) {
      this._ticker = window.setInterval(() => this._render(), 1000);
    } else if (!on && this._ticker) {
      window.clearInterval(this._ticker);
      this._ticker = 0;
    }
  }

  private _saved: ISavedTask | null = null;
  private _renderedState = '';
  private _looked = false;
  private _lookups = 0;
  private _notStored = false;
  private _cancelFailed = false;
  private _outcomeKey = '';
  private _infoKey = '';
  private _outcomeGen = 0;
  private _ticker = 0;
  private _logTimer = 0;
  private _logSeq = 0;
  private _logCount = 0;
  private _logLines: string[] = [];
  private readonly _name: HTMLElement;
  private readonly _status: HTMLElement;
  private readonly _id: HTMLElement;
  private readonly _bar: HTMLElement;
  private readonly _fill: HTMLElement;
  private readonly _percent: HTMLElement;
  private readonly _timing: HTMLElement;
  private readonly _cancel: HTMLButtonElement;
  private readonly _info: HTMLElement;
  private readonly _note: HTMLElement;
  private readonly _outcome: HTMLElement;
  private readonly _log: HTMLDetailsElement;
  private readonly _logTitle: HTMLElement;
  private readonly _logText: HTMLElement;
}

/** The renderer factory: safe (it writes text only), so untrusted notebooks use it too. */
export function taskRendererFactory(model: TaskModel): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [TASK_MIME],
    defaultRank: TASK_MIME_RANK,
    createRenderer: () => new TaskOutput(model)
  };
}

function shortResult(task: ITask): string {
  if (task.result === null || task.result === undefined) {
    return '';
  }
  const text = JSON.stringify(task.result);
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

function previewTable(preview: ISavedPreview): HTMLElement {
  const box = el('div', 'jp-RaythaCell-preview');
  const total = preview.total_rows;
  const width = preview.total_columns ?? preview.columns.length;
  const shown = preview.rows.length;
  const caption = el('div', 'jp-RaythaCell-result');
  caption.append(
    el('b', '', 'result'),
    `: ${preview.library ? `${preview.library} frame` : 'table'}, ` +
      `${total === null ? '' : `${count(total, 'row')}, `}${count(width, 'column')}` +
      (total !== null && total > shown ? ` (first ${shown} shown)` : '')
  );
  const table = el('table', 'jp-RaythaCell-table');
  const head = el('tr');
  for (const name of preview.columns) {
    head.append(el('th', '', name));
  }
  table.append(el('thead'), el('tbody'));
  table.tHead!.append(head);
  for (const row of preview.rows) {
    const tr = el('tr');
    for (const value of row) {
      tr.append(el('td', '', value));
    }
    table.tBodies[0].append(tr);
  }
  box.append(caption, table);
  return box;
}
