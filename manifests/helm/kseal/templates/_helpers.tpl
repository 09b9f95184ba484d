{{- define "kseal.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "kseal.labels" -}}
app.kubernetes.io/name: kseal-controller
app.kubernetes.io/part-of: kseal
{{- end -}}

{{- define "kseal.subject" -}}
- kind: ServiceAccount
  name: kseal-controller
  namespace: {{ .Values.namespace.name }}
{{- end -}}

{{- define "kseal.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "kseal.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}


{{/* The custody flags as environment variables, for the controller and rotate-key. */}}
{{- define "kseal.custodyEnv" -}}
{{- with .Values.custody }}
{{- if ne .kind "none" }}
- name: KSEAL_CUSTODY
  value: {{ .kind }}
{{- with .clusterId }}
- name: KSEAL_CUSTODY_CLUSTER_ID
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- if eq .kind "kms-v2" }}
- name: KSEAL_CUSTODY_KMS_SOCKET
  value: {{ .kms.socket | quote }}
{{- end }}
{{- if eq .kind "pkcs11" }}
- name: KSEAL_CUSTODY_PKCS11_MODULE
  value: {{ .pkcs11.module | quote }}
- name: KSEAL_CUSTODY_PKCS11_TOKEN
  value: {{ .pkcs11.token | quote }}
- name: KSEAL_CUSTODY_PKCS11_KEY
  value: {{ .pkcs11.key | quote }}
- name: KSEAL_CUSTODY_PKCS11_PIN_FILE
  value: /var/run/kseal-pkcs11/{{ .pkcs11.pinSecret.key }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Where the custodian is reached from a container: the token's PIN (a Secret mounted
as a file), the KMS plugin sidecar's socket directory, and custody.extraVolumeMounts. */}}
{{- define "kseal.custodyVolumeMounts" -}}
{{- if eq .Values.custody.kind "pkcs11" }}
- name: pkcs11-pin
  mountPath: /var/run/kseal-pkcs11
  readOnly: true
{{- end }}
{{- if and (eq .Values.custody.kind "kms-v2") .Values.custody.kms.sidecar }}
- name: kms-socket
  mountPath: {{ dir .Values.custody.kms.socket }}
{{- end }}
{{- with .Values.custody.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The pod's volumes for custody: the socket's emptyDir, and custody.extraVolumes. */}}
{{- define "kseal.custodyVolumes" -}}
{{- if eq .Values.custody.kind "pkcs11" }}
- name: pkcs11-pin
  secret:
    secretName: {{ required "custody.pkcs11.pinSecret.name" .Values.custody.pkcs11.pinSecret.name }}
    defaultMode: 0400
{{- end }}
{{- if and (eq .Values.custody.kind "kms-v2") .Values.custody.kms.sidecar }}
- name: kms-socket
  emptyDir: {}
{{- end }}
{{- with .Values.custody.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}
