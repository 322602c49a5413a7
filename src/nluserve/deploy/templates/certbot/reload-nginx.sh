#!/bin/sh
# /etc/letsencrypt/renewal-hooks/deploy/reload-nginx.sh, rendered by `nluserve deploy render`.
# certbot runs deploy hooks only after a certificate was actually renewed.
set -eu
case " ${RENEWED_DOMAINS:-} " in
    *" @domain@ "*)
        nginx -t -q
        systemctl reload nginx
        ;;
esac
