// One wording for API errors across the console (RFC 9457 problem bodies from the API).

import { t } from './i18n.js';

/** What the problem body adds to its title: field-level reasons, the valid labels, when to retry
 * and the request id an operator looks for in the logs and the audit trail. */
function details(err, withRetry = true) {
  const problem = err.problem || {};
  const parts = [];
  if (Array.isArray(problem.errors)) {
    for (const item of problem.errors) {
      if (item && (item.field || item.message)) parts.push([item.field, item.message].filter(Boolean).join(': '));
    }
  }
  if (Array.isArray(problem.valid_labels) && problem.valid_labels.length) {
    parts.push(t('error.validLabels', { labels: problem.valid_labels.join(', ') }));
  }
  const retry = err.headers && typeof err.headers.get === 'function' ? err.headers.get('Retry-After') : null;
  if (withRetry && retry && /^\d+$/.test(retry.trim())) parts.push(t('error.retry', { s: retry.trim() }));
  if (problem.request_id) parts.push(t('error.requestId', { id: problem.request_id }));
  return parts.length ? ` (${parts.join('; ')})` : '';
}

/** A user-facing sentence for an ApiError. */
export function describe(err) {
  if (err.status === 0) return t('error.network');
  if (err.status === 401) return t('logout.unauthorized');
  if (err.slug === 'tenant-disabled') return t('logout.disabled');
  // A 429's detail already says when to retry ("retry after 12 s"): not twice.
  if (err.status === 429) return t('error.rate', { detail: err.problem.detail || '' }) + details(err, false);
  const { title, detail } = err.problem || {};
  const parts = [title, detail].filter(Boolean).join(': ');
  return `${t('error.request')} (${err.status})${parts ? ` \u2014 ${parts}` : ''}${details(err)}`;
}
