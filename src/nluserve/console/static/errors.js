// One wording for API errors across the console (RFC 9457 problem bodies from the API).

import { t } from './i18n.js';

/** A user-facing sentence for an ApiError. */
export function describe(err) {
  if (err.status === 0) return t('error.network');
  if (err.status === 401) return t('logout.unauthorized');
  if (err.slug === 'tenant-disabled') return t('logout.disabled');
  if (err.status === 429) return t('error.rate', { detail: err.problem.detail || '' });
  const { title, detail } = err.problem || {};
  const parts = [title, detail].filter(Boolean).join(': ');
  return `${t('error.request')} (${err.status})${parts ? ` \u2014 ${parts}` : ''}`;
}
