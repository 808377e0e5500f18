/** A small parser of `text/event-stream` bodies (the WHATWG rules the kit needs: fields, comments, blank-line framing). */

export interface SseEvent {
  /** The `event:` field; `message` when absent. */
  event: string;
  data: string;
  /** Whether the event had any `data:` line at all. */
  hasData: boolean;
  /** The body ended before the blank line that ends an event. */
  unterminated?: boolean;
}

export function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  let event = '';
  let data: string[] = [];
  let seen = false;
  const flush = () => {
    if (seen) events.push({ event: event || 'message', data: data.join('\n'), hasData: data.length > 0 });
    event = '';
    data = [];
    seen = false;
  };
  for (const line of text.split(/\r\n|\r|\n/)) {
    if (line === '') {
      flush();
      continue;
    }
    if (line.startsWith(':')) continue; // a comment (keep-alive)
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    seen = true;
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
  }
  // An event not closed by a blank line is dropped by browsers: report it as it is, unterminated.
  if (seen) events.push({ event: event || 'message', data: data.join('\n'), hasData: data.length > 0, unterminated: true });
  return events;
}
