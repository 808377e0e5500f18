import { describe, expect, it } from 'vitest';
import { createRouter } from '../src/http/router.js';

describe('router matches', () => {
  const noop = async () => {};

  it('a remembered match is the same as a fresh one, handed out as copies, and forgotten when a route is added', () => {
    const router = createRouter('/api/v1');
    router.get('/models', noop);
    router.get('/models/:id', noop);
    const first = router.match('/api/v1/models', 'GET');
    expect(first.route).toBe(true);
    expect(first.pathAndMethod.map((layer) => layer.path)).toEqual(['/api/v1/models']);
    first.path.push(first.path[0]!); // as the router does with ctx.matched when another router matched before
    const again = router.match('/api/v1/models', 'GET');
    expect(again.path).toHaveLength(1);
    expect(again.pathAndMethod).not.toBe(first.pathAndMethod);
    expect(router.match('/api/v1/models', 'POST').route).toBe(false);
    expect(router.match('/api/v1/Models', 'GET').route).toBe(false); // exact spelling still
    expect(router.match('/api/v1/models/', 'GET').route).toBe(false);
    expect(router.match('/api/v1/models/tiny', 'GET').pathAndMethod.map((layer) => layer.path)).toEqual(['/api/v1/models/:id']);
    // A route added after a path was matched is found on that path's next match.
    expect(router.match('/api/v1/models/tiny/load', 'POST').route).toBe(false);
    router.post('/models/:id/load', noop);
    expect(router.match('/api/v1/models/tiny/load', 'POST').route).toBe(true);
  });

  it('matches stay right past the bound of kept matches (ever new paths) and for paths too long to keep', () => {
    const router = createRouter();
    router.get('/models/:id', noop);
    for (let i = 0; i < 2_000; i++) expect(router.match(`/models/m${i}`, 'GET').route).toBe(true);
    const long = `/models/${'x'.repeat(1_000)}`;
    expect(router.match(long, 'GET').route).toBe(true);
    expect(router.match(long, 'DELETE').route).toBe(false);
  });
});
