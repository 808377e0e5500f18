import { hash, randomInt } from 'node:crypto';

const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
export const API_KEY_PREFIX = 'inf_';
const RANDOM_LENGTH = 40; // 40 base62 characters: about 238 bits of entropy.
const API_KEY_SHAPE = /^inf_[0-9A-Za-z]{32,128}$/;

export interface GeneratedApiKey {
  key: string;
  /** `inf_` and the first 8 random characters: enough to recognise a key, useless to use it. */
  prefix: string;
  hash: string;
}

/** A fresh API key. Only its hash and prefix are stored; the key itself is shown once. */
export function generateApiKey(): GeneratedApiKey {
  let random = '';
  for (let i = 0; i < RANDOM_LENGTH; i++) random += BASE62[randomInt(BASE62.length)];
  const key = API_KEY_PREFIX + random;
  return { key, prefix: key.slice(0, API_KEY_PREFIX.length + 8), hash: hashApiKey(key) };
}

export function hashApiKey(key: string): string {
  // One-shot: a fraction of createHash().update().digest() for a short input, on every API-key request.
  return hash('sha256', key, 'hex');
}

export function looksLikeApiKey(value: string): boolean {
  return API_KEY_SHAPE.test(value);
}
