/** The status bar item: "⟳ 2 tasks" while tasks run; a click opens the panel. */
import { Widget } from '@lumino/widgets';

import { TaskModel } from './model';

export class TaskStatusItem extends Widget {
  constructor(
    readonly model: TaskModel,
    onClick: () => void
  ) {
    super();
    this.addClass('jp-RaythaStatus');
    this.node.title = 'Background tasks running or queued: click to show them';
    this.node.addEventListener('click', onClick);
    model.activeCountChanged.connect(this.update, this);
    this.update();
  }

  get count(): number {
    return this.model.activeCount;
  }

  update(): void {
    const n = this.count;
    this.node.textContent = `⟳ ${n} ${n === 1 ? 'task' : 'tasks'}`;
    this.node.dataset.count = String(n);
  }

  dispose(): void {
    this.model.activeCountChanged.disconnect(this.update, this);
    super.dispose();
  }
}
