// The /ws event stream: authenticates with its first message (browsers
// cannot set the Authorization header), subscribes to every event, and
// reconnects after a network blip or a restart of nornd, resuming after the
// last seq it saw. When nornd cannot resume (it restarted, or the history is
// gone) it says "resync": listeners then reload their state over HTTP.
//
// Listeners: on('event', fn(ev)), on('resync', fn(payload)),
// on('state', fn(state)) with state 'connecting' | 'live' | 'disconnected',
// on('unauthorized', fn()).

const RETRY_MS = [250, 500, 1000, 2000, 4000];

export class Stream {
  constructor(token) {
    this.token = token;
    this.lastSeq = null;
    this.listeners = new Map();
    this.state = 'connecting';
    this.attempt = 0;
    this.stopped = false;
    this.connect();
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  emit(type, arg) {
    for (const fn of [...(this.listeners.get(type) || [])]) {
      try {
        fn(arg);
      } catch (e) {
        console.error(e);
      }
    }
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.emit('state', state);
  }

  connect() {
    const url = new URL('/ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    // The subscription is the upgrade's: its answer is the first message
    // after authentication, so no event can slip in between.
    if (this.lastSeq !== null) url.search = `since=${this.lastSeq}`;
    const ws = new WebSocket(url);
    this.ws = ws;
    let authenticated = false;

    ws.onopen = () => {
      ws.send(JSON.stringify({ type: 'auth', token: this.token }));
    };
    ws.onmessage = (m) => {
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      if (msg.type === 'subscribed') {
        authenticated = true;
        this.attempt = 0;
        const fresh = this.lastSeq === null;
        if (fresh) this.lastSeq = msg.payload.lastSeq;
        this.setState('live');
        // Without a seq to resume from, what happened before this
        // connection is only known over HTTP.
        if (fresh) this.emit('resync', { reason: 'connected' });
      } else if (msg.type === 'resync') {
        authenticated = true;
        this.lastSeq = msg.payload.lastSeq;
        this.setState('live');
        this.emit('resync', msg.payload);
      } else if (msg.type === 'skipped') {
        this.emit('skipped', msg.payload);
      } else if (typeof msg.seq === 'number') {
        if (this.lastSeq !== null && msg.seq <= this.lastSeq) return; // replayed twice
        this.lastSeq = msg.seq;
        this.emit('event', msg);
      }
    };
    ws.onclose = (e) => {
      if (this.ws !== ws) return;
      if (e.code === 1008 && !authenticated) {
        this.stopped = true;
        this.setState('disconnected');
        this.emit('unauthorized', e.reason);
        return;
      }
      if (this.stopped) return;
      this.setState('disconnected');
      const delay = RETRY_MS[Math.min(this.attempt++, RETRY_MS.length - 1)];
      this.timer = setTimeout(() => this.connect(), delay);
    };
  }

  close() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
  }
}
