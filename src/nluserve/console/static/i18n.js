// UI text in Chinese and English. The language follows navigator.language until the user picks
// one; the choice is remembered in localStorage (the only thing the console keeps there).

const STORE = 'nluserve.lang';

const MESSAGES = {
  en: {
    'app.title': 'nluserve console',
    'app.brand': 'nluserve console',
    skip: 'Skip to content',
    'auth.off': 'Authentication is off on this server (NLUSERVE_AUTH=false): no key is needed, and there is no usage or admin view.',
    'nav.label': 'Sections',
    'nav.playground': 'Playground',
    'nav.usage': 'Usage',
    'nav.admin': 'Admin',
    'lang.label': 'Language',
    logout: 'Log out',
    'login.title': 'Log in with an API key',
    'login.key': 'API key',
    'login.submit': 'Log in',
    'login.note':
      'The key is kept in this tab\u2019s session storage only: never in a URL, cookie or log, ' +
      'and it is gone when the tab closes. The console calls the public API with it, as any client would.',
    'login.checking': 'Checking the key\u2026',
    'login.empty': 'Enter an API key.',
    'login.notAKey':
      'This is not an API key: keys and tokens contain only letters, digits and ASCII punctuation such as _ - . (no spaces or full-width characters). Copy it again exactly.',
    'login.wrong':
      'This API key was not accepted. Check that it was copied in full and has not been revoked or expired.',
    'login.disabled': 'This tenant is disabled. Ask an administrator to enable it.',
    'login.loggedOut': 'You have logged out.',
    'logout.unauthorized': 'You were logged out: the API no longer accepts this key.',
    'logout.disabled': 'You were logged out: this tenant has been disabled.',
    'error.network': 'Cannot reach the server. Check your connection and try again.',
    'error.request': 'Request failed',
    'error.rate': 'Too many requests: {detail}',
    'error.validLabels': 'valid types: {labels}',
    'error.retry': 'retry in {s} s',
    'error.requestId': 'request id {id}',
    loading: 'Loading\u2026',
    refresh: 'Refresh',
    copy: 'Copy',
    'copy.of': 'Copy {what}',
    copied: 'Copied',
    'copy.manual': 'Could not copy: the text is selected, press Ctrl+C (\u2318C on a Mac).',
    'data.table': 'Show the data as a table',
    'col.day': 'Day',
    'col.model': 'Model',
    'col.calls': 'Calls',
    'col.texts': 'Texts',
    'col.chars': 'Characters',
    'col.errors': 'Errors',
    'col.total': 'Total',
    'pg.title': 'Playground',
    'pg.model': 'Model',
    'pg.text': 'Text (one text per line)',
    'pg.labels': 'Entity types (none checked: all types)',
    'pg.run': 'Run',
    'pg.running': 'Running\u2026',
    'pg.notext': 'Enter at least one line of text.',
    'pg.nomodels': 'No models are available to this key.',
    'pg.summary': 'model {model} {version} \u00b7 {n} text(s)',
    'pg.latency': 'Latency (round trip): {ms} ms',
    'pg.results': 'Results',
    'pg.textN': 'Text {n}',
    'pg.entities': 'Entities',
    'pg.legend': 'Entity types in this result',
    'pg.noentities': 'No entities found.',
    'pg.sentiment': 'Sentiment',
    'pg.reproduce': 'Reproduce this call',
    'pg.keynote':
      'Put your key in the NLUSERVE_KEY environment variable first; the key itself is never shown here.',
    'col.index': '#',
    'col.text': 'Text',
    'col.type': 'Type',
    'col.start': 'Start',
    'col.end': 'End',
    'col.score': 'Score',
    'col.label': 'Label',
    'us.title': 'Usage',
    'us.period': 'Period',
    'us.days': 'Last {n} days',
    'us.quota': 'Quota today',
    'us.quotaUsed': '{used} of {limit} calls used today',
    'us.quotaReset': 'Resets in {time}.',
    'dur.hm': '{h} h {m} min',
    'dur.m': '{m} min',
    'us.rate': 'Rate limit',
    'us.rateText': 'Bursts of up to {burst} calls, refilled in {w} s.',
    'us.rateNow': '{r} calls available right now.',
    'us.noheaders': 'The server sent no rate-limit headers.',
    'us.calls': 'Calls per day, by model',
    'us.chars': 'Characters per day, by model',
    'us.byModel': 'Totals by model',
    'us.errors': 'Errors among admitted calls (timeouts, overload, disconnects)',
    'us.errorsNote':
      'Only calls that were admitted are recorded: a call refused before admission (401, 403, 413, 422, 429) ' +
      'is not counted here or in the charts.',
    'us.noerrors': 'No errors in this period.',
    'us.empty': 'No calls in this period yet.',
    'us.utc': 'Days are UTC days, the days the server counts usage and the daily quota by.',
    'ad.title': 'Admin',
    'ad.only': 'Admin only: this key is not an admin key, so there is nothing to show here.',
    'ad.tenants': 'Tenants',
    'ad.today': 'Calls today',
    'ad.chart': 'Calls per tenant per day',
    'ad.create': 'Create a tenant',
    'ad.name': 'Name (letters, digits, . _ -)',
    'ad.quotaOpt': 'Daily quota (optional)',
    'ad.createBtn': 'Create tenant',
    'ad.createdTenant': 'Created tenant {name}.',
    'ad.newKey': 'New API key for {name}. It is shown once: copy it now.',
    'ad.newKeyLabel': 'New API key',
    'ad.dismiss': 'I have copied it',
    'ad.disable': 'Disable',
    'ad.enable': 'Enable',
    'ad.keys': 'Keys',
    'ad.hideKeys': 'Hide keys',
    'ad.keysOf': 'Keys of {name}',
    'ad.hideKeysOf': 'Hide keys of {name}',
    'ad.disableOf': 'Disable {name}',
    'ad.enableOf': 'Enable {name}',
    'ad.revokeKey': 'Revoke key {id}',
    'ad.keyName': 'Key name (optional)',
    'ad.createKey': 'Create key',
    'ad.revoke': 'Revoke',
    'ad.revoked': 'revoked',
    'ad.expired': 'expired',
    'ad.never': 'never',
    'ad.nokeys': 'No keys.',
    'ad.statusChanged': '{name} is now {status}.',
    'ad.keyRevoked': 'Key {id} revoked.',
    'ad.confirmDisable': 'Disable tenant {name}? Its keys stop working within seconds.',
    'ad.confirmDisableAdmin':
      '{name} is an admin tenant. If the key of this session belongs to it, you lock yourself out ' +
      'of this console. Type the name {name} to disable it.',
    'ad.confirmRevoke': 'Revoke key {id} of {name}? It is refused from then on; this cannot be undone.',
    'ad.confirmRevokeSelf':
      'Key {id} is the key of this session: revoking it logs you out, and if it is the only admin key, ' +
      'admin access is gone. Type the key id {id} to revoke it.',
    'ad.cancelled': 'Nothing was changed.',
    'ad.thisSession': 'this session',
    'ad.badName': 'Name: use only letters, digits, . _ and - (no spaces).',
    'ad.badQuota': 'Daily quota must be a whole number, 0 or more (leave it empty for the default). Nothing was created.',
    'col.name': 'Name',
    'col.status': 'Status',
    'col.role': 'Role',
    'col.quota': 'Quota / day',
    'col.rate': 'Rate',
    'col.actions': 'Actions',
    'col.keyId': 'Key id',
    'col.created': 'Created',
    'col.lastUsed': 'Last used',
    'col.expires': 'Expires',
    'role.admin': 'admin',
    'role.tenant': 'tenant',
    'status.active': 'active',
    'status.disabled': 'disabled',
    'rate.value': '{rate}/s, burst {burst}',
  },
  zh: {
    'app.title': 'nluserve 控制台',
    'app.brand': 'nluserve 控制台',
    skip: '跳到主要内容',
    'auth.off': '此服务器未启用身份验证（NLUSERVE_AUTH=false）：无需密钥，也没有用量和管理页面。',
    'nav.label': '栏目',
    'nav.playground': '在线试用',
    'nav.usage': '用量',
    'nav.admin': '管理',
    'lang.label': '语言',
    logout: '退出登录',
    'login.title': '使用 API 密钥登录',
    'login.key': 'API 密钥',
    'login.submit': '登录',
    'login.note':
      '密钥只保存在本标签页的 sessionStorage 中：不会出现在网址、Cookie 或日志里，关闭标签页即清除。' +
      '控制台用它调用公开 API，与其他客户端完全相同。',
    'login.checking': '正在验证密钥…',
    'login.empty': '请输入 API 密钥。',
    'login.notAKey': '这不是 API 密钥：密钥和令牌只包含英文字母、数字和 _ - . 等 ASCII 符号（没有空格或全角字符）。请重新完整复制。',
    'login.wrong': '此 API 密钥无效。请确认已完整复制，且未被吊销或过期。',
    'login.disabled': '该租户已被停用，请联系管理员启用。',
    'login.loggedOut': '已退出登录。',
    'logout.unauthorized': '已退出登录：API 不再接受此密钥。',
    'logout.disabled': '已退出登录：该租户已被停用。',
    'error.network': '无法连接服务器，请检查网络后重试。',
    'error.request': '请求失败',
    'error.rate': '请求过于频繁：{detail}',
    'error.validLabels': '可用类型：{labels}',
    'error.retry': '{s} 秒后重试',
    'error.requestId': '请求 ID {id}',
    loading: '加载中…',
    refresh: '刷新',
    copy: '复制',
    'copy.of': '复制 {what}',
    copied: '已复制',
    'copy.manual': '无法自动复制：文本已选中，请按 Ctrl+C（Mac 上按 ⌘C）。',
    'data.table': '以表格查看数据',
    'col.day': '日期',
    'col.model': '模型',
    'col.calls': '调用次数',
    'col.texts': '文本数',
    'col.chars': '字符数',
    'col.errors': '错误数',
    'col.total': '合计',
    'pg.title': '在线试用',
    'pg.model': '模型',
    'pg.text': '文本（每行一条）',
    'pg.labels': '实体类型（不勾选即全部类型）',
    'pg.run': '运行',
    'pg.running': '运行中…',
    'pg.notext': '请至少输入一行文本。',
    'pg.nomodels': '此密钥没有可用的模型。',
    'pg.summary': '模型 {model} {version} · {n} 条文本',
    'pg.latency': '耗时（往返）：{ms} 毫秒',
    'pg.results': '结果',
    'pg.textN': '文本 {n}',
    'pg.entities': '实体',
    'pg.legend': '本次结果中的实体类型',
    'pg.noentities': '未识别到实体。',
    'pg.sentiment': '情感',
    'pg.reproduce': '复现此调用',
    'pg.keynote': '请先把密钥放入环境变量 NLUSERVE_KEY；此处从不显示密钥本身。',
    'col.index': '#',
    'col.text': '文本',
    'col.type': '类型',
    'col.start': '起点',
    'col.end': '终点',
    'col.score': '分数',
    'col.label': '标签',
    'us.title': '用量',
    'us.period': '时间范围',
    'us.days': '最近 {n} 天',
    'us.quota': '今日配额',
    'us.quotaUsed': '今日已用 {used} / {limit} 次',
    'us.quotaReset': '{time}后重置。',
    'dur.hm': '{h} 小时 {m} 分钟',
    'dur.m': '{m} 分钟',
    'us.rate': '速率限制',
    'us.rateText': '突发最多 {burst} 次，{w} 秒内恢复。',
    'us.rateNow': '当前可用 {r} 次。',
    'us.noheaders': '服务器未返回速率限制响应头。',
    'us.calls': '每日调用次数（按模型）',
    'us.chars': '每日字符数（按模型）',
    'us.byModel': '按模型汇总',
    'us.errors': '已受理调用中的错误（超时、过载、断开连接）',
    'us.errorsNote': '只记录已受理的调用：在受理前被拒绝的调用（401、403、413、422、429）不计入此处，也不计入图表。',
    'us.noerrors': '此期间没有错误。',
    'us.empty': '此期间暂无调用。',
    'us.utc': '日期按 UTC 计算：服务器按 UTC 日统计用量和每日配额。',
    'ad.title': '管理',
    'ad.only': '仅限管理员：此密钥不是管理员密钥，这里没有可显示的内容。',
    'ad.tenants': '租户',
    'ad.today': '今日调用',
    'ad.chart': '各租户每日调用次数',
    'ad.create': '新建租户',
    'ad.name': '名称（字母、数字、. _ -）',
    'ad.quotaOpt': '每日配额（可选）',
    'ad.createBtn': '创建租户',
    'ad.createdTenant': '已创建租户 {name}。',
    'ad.newKey': '{name} 的新 API 密钥。仅显示这一次，请立即复制。',
    'ad.newKeyLabel': '新 API 密钥',
    'ad.dismiss': '我已复制',
    'ad.disable': '停用',
    'ad.enable': '启用',
    'ad.keys': '密钥',
    'ad.hideKeys': '收起密钥',
    'ad.keysOf': '{name} 的密钥',
    'ad.hideKeysOf': '隐藏 {name} 的密钥',
    'ad.disableOf': '停用 {name}',
    'ad.enableOf': '启用 {name}',
    'ad.revokeKey': '吊销密钥 {id}',
    'ad.keyName': '密钥名称（可选）',
    'ad.createKey': '新建密钥',
    'ad.revoke': '吊销',
    'ad.revoked': '已吊销',
    'ad.expired': '已过期',
    'ad.never': '从未',
    'ad.nokeys': '没有密钥。',
    'ad.statusChanged': '{name} 现在为{status}状态。',
    'ad.keyRevoked': '密钥 {id} 已吊销。',
    'ad.confirmDisable': '确定停用租户 {name}？其密钥将在几秒内失效。',
    'ad.confirmDisableAdmin':
      '{name} 是管理员租户。如果当前会话的密钥属于它，您将无法再使用本控制台。请输入名称 {name} 以确认停用。',
    'ad.confirmRevoke': '确定吊销 {name} 的密钥 {id}？此后使用它的请求都会被拒绝，且无法撤销。',
    'ad.confirmRevokeSelf':
      '密钥 {id} 是当前会话正在使用的密钥：吊销后您将被退出登录；如果它是唯一的管理员密钥，将失去管理权限。' +
      '请输入密钥 ID {id} 以确认吊销。',
    'ad.cancelled': '未做任何更改。',
    'ad.thisSession': '当前会话',
    'ad.badName': '名称只能包含字母、数字以及 . _ -（不能有空格）。',
    'ad.badQuota': '每日配额必须是 0 或更大的整数（留空则使用默认值）。未创建任何租户。',
    'col.name': '名称',
    'col.status': '状态',
    'col.role': '角色',
    'col.quota': '每日配额',
    'col.rate': '速率',
    'col.actions': '操作',
    'col.keyId': '密钥 ID',
    'col.created': '创建时间',
    'col.lastUsed': '最近使用',
    'col.expires': '过期时间',
    'role.admin': '管理员',
    'role.tenant': '租户',
    'status.active': '启用',
    'status.disabled': '停用',
    'rate.value': '{rate} 次/秒，突发 {burst}',
  },
};

function initial() {
  const saved = localStorage.getItem(STORE);
  if (saved && saved in MESSAGES) return saved;
  const wanted = (navigator.languages && navigator.languages[0]) || navigator.language || 'en';
  return wanted.toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

let current = initial();

export function lang() {
  return current;
}

/** The message for key in the current language, with {name} placeholders filled in. */
export function t(key, params = {}) {
  const text = MESSAGES[current][key] ?? MESSAGES.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => (name in params ? String(params[name]) : ''));
}

/** A number in a few characters (1.2K, 1.2万) for chart axes, whose space is short; tables and
 * tooltips keep num(). */
export function compact(value) {
  return new Intl.NumberFormat(current === 'zh' ? 'zh-CN' : 'en', { notation: 'compact' }).format(value);
}

/** Locale-aware number formatting. */
export function num(value, digits = 0) {
  return new Intl.NumberFormat(current === 'zh' ? 'zh-CN' : 'en', {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  }).format(value);
}

/** Fill [data-i18n] text and [data-i18n-attr="attr:key;..."] attributes under root. */
export function applyI18n(root = document) {
  document.documentElement.lang = current === 'zh' ? 'zh-CN' : 'en';
  document.title = t('app.title');
  for (const el of root.querySelectorAll('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n);
  }
  for (const el of root.querySelectorAll('[data-i18n-attr]')) {
    for (const pair of el.dataset.i18nAttr.split(';')) {
      const [attr, key] = pair.split(':');
      el.setAttribute(attr, t(key));
    }
  }
}

/** Switch language, remember it, refresh static text and tell the views to re-render. */
export function setLang(next) {
  if (!(next in MESSAGES)) return;
  current = next;
  localStorage.setItem(STORE, next);
  applyI18n();
  window.dispatchEvent(new CustomEvent('nluserve:lang'));
}
