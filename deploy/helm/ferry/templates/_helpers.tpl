{{/*
Chart name, shortened to the 63 characters a label value may have.
*/}}
{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Prefix of every object name: fullnameOverride, else the release name when
it already contains the chart name, else "RELEASE-CHART".
*/}}
{{- define "ferry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Name of one component's objects. Takes a dict with "root" (the top
context) and "component" (ingress, deliver-REGION, takeover, controller).
*/}}
{{- define "ferry.componentName" -}}
{{- printf "%s-%s" (include "ferry.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Labels of every object, the standard app.kubernetes.io set. Takes a dict
with "root" and, for a component's objects, "component".
*/}}
{{- define "ferry.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: ferry
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Selector labels: the subset that stays the same across upgrades, because
a Deployment's selector cannot change. Takes the same dict as ferry.labels.
*/}}
{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ferry.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Port of a section's http_listen (host:port). Takes a dict with "root" and
"section" (ingress, deliver, controller) and fails when the key is empty,
because the probes and the metrics scrape need the listener.
*/}}
{{- define "ferry.httpPort" -}}
{{- $listen := index .root.Values.config .section "http_listen" | default "" | toString -}}
{{- if not (regexMatch ":[0-9]+$" $listen) -}}
{{- fail (printf "config.%s.http_listen must be host:port (for example 0.0.0.0:8080) because the probes and /metrics use it; it is %q" .section $listen) -}}
{{- end -}}
{{- regexFind "[0-9]+$" $listen -}}
{{- end -}}

{{/*
Port of ingress.listen, the SMTP port inside the pod.
*/}}
{{- define "ferry.smtpPort" -}}
{{- $listen := .Values.config.ingress.listen | default "" | toString -}}
{{- if not (regexMatch ":[0-9]+$" $listen) -}}
{{- fail (printf "config.ingress.listen must be host:port, for example 0.0.0.0:2525; it is %q" $listen) -}}
{{- end -}}
{{- regexFind "[0-9]+$" $listen -}}
{{- end -}}

{{/*
Mount paths inside the pods.
*/}}
{{- define "ferry.configDir" -}}/etc/ferry{{- end -}}
{{- define "ferry.tlsDir" -}}/etc/ferry/tls{{- end -}}
{{- define "ferry.authDir" -}}/etc/ferry/auth{{- end -}}

{{/*
The configuration file the daemons read: the config block of the values,
with the paths of the mounted Secrets when ingress.tls.secretName or
ingress.auth.credentialsSecret is set, and proxy_protocol true when
ingress.proxyProtocol.enabled is.
*/}}
{{- define "ferry.configFile" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.ingress.tls.secretName -}}
{{- $_ := set $config.ingress "tls_certificate" (printf "%s/%s" (include "ferry.tlsDir" .) .Values.ingress.tls.certificateKey) -}}
{{- $_ := set $config.ingress "tls_key" (printf "%s/%s" (include "ferry.tlsDir" .) .Values.ingress.tls.privateKeyKey) -}}
{{- end -}}
{{- if .Values.ingress.proxyProtocol.enabled -}}
{{- $_ := set $config.ingress "proxy_protocol" true -}}
{{- end -}}
{{- if .Values.ingress.auth.credentialsSecret -}}
{{- $_ := set $config.ingress "credentials_file" (printf "%s/%s" (include "ferry.authDir" .) .Values.ingress.auth.credentialsKey) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/*
Pod-level pieces every daemon shares: service account, security context,
scheduling, the configuration volume. Takes a dict with "root" and
"component" (the values block of the component).
*/}}
{{- define "ferry.podCommon" -}}
serviceAccountName: {{ include "ferry.serviceAccountName" .root }}
automountServiceAccountToken: false
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ .component.terminationGracePeriodSeconds }}
{{- with .component.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .component.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .component.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- tpl (toYaml .) $.root | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Volumes of every pod: the configuration, and whatever extraVolumes adds.
*/}}
{{- define "ferry.volumes" -}}
- name: config
  configMap:
    name: {{ include "ferry.fullname" .root }}
{{- with .root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "ferry.volumeMounts" -}}
- name: config
  mountPath: {{ include "ferry.configDir" .root }}/ferry.yaml
  subPath: ferry.yaml
  readOnly: true
{{- with .root.Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Environment of every daemon: the AWS credentials Secret when set, then
extraEnv.
*/}}
{{- define "ferry.env" -}}
{{- with .root.Values.aws.credentialsSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_ACCESS_KEY_ID
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SECRET_ACCESS_KEY
- name: AWS_SESSION_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: AWS_SESSION_TOKEN
      optional: true
{{- end }}
{{- with .root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Container pieces every daemon shares: image, security context, the HTTP
port with the probes on /healthz and /readyz. Takes a dict with "root",
"component" (the values block) and "section" (the config section whose
http_listen the daemon serves).
*/}}
{{- define "ferry.containerCommon" -}}
image: {{ include "ferry.image" .root }}
imagePullPolicy: {{ .root.Values.image.pullPolicy }}
securityContext:
  {{- toYaml .root.Values.containerSecurityContext | nindent 2 }}
resources:
  {{- toYaml .component.resources | nindent 2 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml .root.Values.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  {{- toYaml .root.Values.probes.readiness | nindent 2 }}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  {{- toYaml .root.Values.probes.startup | nindent 2 }}
{{- end -}}

{{/*
A PodDisruptionBudget. Takes a dict with "root", "name", "component"
(label value) and "pdb" (the values block: enabled, minAvailable,
maxUnavailable).
*/}}
{{- define "ferry.pdb" -}}
{{- if .pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "ferry.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .pdb.minAvailable) }}
  minAvailable: {{ .pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .pdb.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "ferry.selectorLabels" (dict "root" .root "component" .component) | nindent 6 }}
{{- end }}
{{- end -}}
