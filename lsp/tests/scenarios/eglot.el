;;; eglot.el --- the hotswap-lsp end-to-end scenario for Emacs with eglot  -*- lexical-binding: t -*-

;; Run by lsp/tests/language_server/editors.rs as `emacs --batch -Q -l eglot.el' (Debian's Emacs
;; 28 and eglot 1.9), with the same environment and steps as neovim.lua: HOTSWAP_TEST_LSP,
;; HOTSWAP_TEST_ROOT, HOTSWAP_TEST_FILE, HOTSWAP_TEST_PORT, HOTSWAP_TEST_RESULTS and
;; HOTSWAP_TEST_WAIT_MS. Every failure ends with a non-zero exit code.

;;; Code:

(require 'package)
(add-to-list 'package-directory-list "/usr/share/emacs/site-lisp/elpa")
(package-initialize)
(require 'eglot)
(require 'cl-lib)

(defvar hotswap-test-results (getenv "HOTSWAP_TEST_RESULTS"))
(defvar hotswap-test-port (string-to-number (getenv "HOTSWAP_TEST_PORT")))
(defvar hotswap-test-wait (/ (string-to-number (or (getenv "HOTSWAP_TEST_WAIT_MS") "20000")) 1000.0))
(defvar hotswap-test-shown nil "Messages the server showed, newest first.")

(defun hotswap-test-note (line)
  (write-region (concat line "\n") nil hotswap-test-results 'append 'quiet))

(defun hotswap-test-fail (step reason)
  (let ((server (ignore-errors (eglot-current-server))))
    (when server
      (hotswap-test-note "eglot's events buffer (the messages exchanged with the server):")
      (hotswap-test-note (with-current-buffer (jsonrpc-events-buffer server) (buffer-string)))))
  (dolist (buffer (buffer-list))
    (when (string-search "stderr" (buffer-name buffer))
      (hotswap-test-note (format "%s:" (buffer-name buffer)))
      (hotswap-test-note (with-current-buffer buffer (buffer-string)))))
  (hotswap-test-note (format "FAIL %s: %s" step reason))
  (kill-emacs 1))

(write-region "" nil hotswap-test-results nil 'quiet)

(cl-defmethod eglot-handle-notification :before
  (_server (_method (eql window/showMessage)) &key _type message)
  (push message hotswap-test-shown)
  (hotswap-test-note (concat "showMessage: " message)))

(defun hotswap-test-shown-containing (text)
  (cl-find-if (lambda (message) (string-search text message)) hotswap-test-shown))

(defun hotswap-test-wait-until (step predicate describe)
  "Let Emacs handle the server's messages until PREDICATE holds; fail STEP after the wait."
  (let ((deadline (+ (float-time) hotswap-test-wait)))
    (while (and (not (funcall predicate)) (< (float-time) deadline))
      (accept-process-output nil 0.02))
    (if (funcall predicate)
        (hotswap-test-note (concat "ok " step))
      (hotswap-test-fail step (concat "timed out; " (funcall describe))))))

(defun hotswap-test-http-get ()
  "GET / over a plain TCP connection; the whole response, or \"\"."
  (condition-case nil
      (with-temp-buffer
        (let ((process (open-network-stream "hotswap-test-http" (current-buffer)
                                            "127.0.0.1" hotswap-test-port))
              (deadline (+ (float-time) 5)))
          (process-send-string process "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
          (while (and (process-live-p process) (< (float-time) deadline))
            (accept-process-output process 0.05))
          (delete-process process)
          (buffer-string)))
    (error "")))

(defun hotswap-test-wait-for-answer (step text)
  (let ((deadline (+ (float-time) hotswap-test-wait))
        (last ""))
    (while (and (not (string-search text last)) (< (float-time) deadline))
      (setq last (hotswap-test-http-get))
      (unless (string-search text last)
        (accept-process-output nil 0.1)))
    (if (string-search text last)
        (hotswap-test-note (concat "ok " step))
      (hotswap-test-fail step (format "the app never answered with %S; last response: %S" text last)))))

(defun hotswap-test-diagnostics ()
  "The hotswap diagnostics eglot holds for the current buffer."
  (cl-remove-if-not (lambda (diagnostic)
                      (string-prefix-p "hotswap" (flymake-diagnostic-text diagnostic)))
                    eglot--diagnostics))

;; Emacs 28 has no Rust mode; the scenario only needs one that eglot can be told about.
(define-derived-mode hotswap-test-rust-mode prog-mode "Rust")
(add-to-list 'auto-mode-alist '("\\.rs\\'" . hotswap-test-rust-mode))
(add-to-list 'eglot-server-programs
             `(hotswap-test-rust-mode . (,(getenv "HOTSWAP_TEST_LSP")
                                         :initializationOptions (:messages "showMessage"))))
(add-hook 'hotswap-test-rust-mode-hook #'eglot-ensure)

(find-file (getenv "HOTSWAP_TEST_FILE"))
;; eglot-ensure connects from post-command-hook, which batch mode does not run by itself.
(run-hooks 'post-command-hook)
(hotswap-test-wait-until "the server starts and attaches" (lambda () (eglot-managed-p))
                         (lambda () "eglot does not manage the buffer"))
(hotswap-test-wait-for-answer "the app serves the scaffolded code" "hello from hotswap")

;; 1. Change the greeting and save.
(goto-char (point-min))
(unless (search-forward "hello from hotswap" nil t)
  (hotswap-test-fail "change the greeting" "the handler has no \"hello from hotswap\""))
(replace-match "hello from emacs" t t)
(save-buffer)
(hotswap-test-wait-for-answer "after saving the app answers with the new code" "hello from emacs")

;; 2. Break it and save: the diagnostic starts exactly at the literal (the `"é"' before it makes
;; UTF-16 columns differ from bytes).
(goto-char (point-max))
(unless (bolp) (insert "\n"))
(let ((broken-start (point)))
  (insert "pub fn hotswap_broken() -> u32 { let _ = \"é\"; \"not a number\" }\n")
  (save-buffer)
  (hotswap-test-wait-until "the build error appears as a diagnostic"
                           (lambda () (hotswap-test-diagnostics))
                           (lambda () (format "diagnostics: %S" eglot--diagnostics)))
  (let ((diagnostic (car (hotswap-test-diagnostics))))
    (save-excursion
      (goto-char (flymake-diagnostic-beg diagnostic))
      (unless (and (eq (flymake-diagnostic-type diagnostic) 'eglot-error)
                   (looking-at-p "\"not a number\"")
                   (string-search "mismatched types" (flymake-diagnostic-text diagnostic)))
        (hotswap-test-fail "the diagnostic points at the literal"
                           (format "%S at %S" (flymake-diagnostic-text diagnostic)
                                   (buffer-substring (point) (line-end-position))))))
    (hotswap-test-note "ok the diagnostic points at the literal"))
  (hotswap-test-wait-until "the failure is shown" (lambda () (hotswap-test-shown-containing "failed"))
                           (lambda () (format "shown: %S" hotswap-test-shown)))
  (hotswap-test-wait-for-answer "the old code keeps serving while the build is broken" "hello from emacs")

  ;; 3. Roll back through the language server. Asynchronously, as docs/editors.md advises: the
  ;; synchronous `eglot-execute-command' of Emacs 28 leaves the messages that follow the answer
  ;; unread until the server writes again.
  (let ((answer nil))
    (jsonrpc-async-request (eglot-current-server) :workspace/executeCommand
                           '(:command "hotswap.rollback" :arguments [])
                           :success-fn (lambda (_result) (setq answer 'ok))
                           :error-fn (lambda (error) (setq answer (format "%S" error))))
    (hotswap-test-wait-until "hotswap.rollback is answered" (lambda () answer) (lambda () "no answer"))
    (unless (eq answer 'ok)
      (hotswap-test-fail "hotswap.rollback" answer)))
  (hotswap-test-wait-for-answer "after the rollback the code before serves again" "hello from hotswap")
  (hotswap-test-wait-until "the rollback is shown" (lambda () (hotswap-test-shown-containing "rolled back"))
                           (lambda () (format "shown: %S" hotswap-test-shown)))

  ;; 4. Fix it and save.
  (delete-region broken-start (point-max))
  (save-buffer)
  (hotswap-test-wait-until "the fixed build clears the diagnostic"
                           (lambda () (null (hotswap-test-diagnostics)))
                           (lambda () (format "diagnostics: %S" eglot--diagnostics)))
  (hotswap-test-wait-for-answer "after the fix the new code serves" "hello from emacs"))

(hotswap-test-note "PASS")
(let ((server (eglot-current-server)))
  (when server (eglot-shutdown server)))
(kill-emacs 0)

;;; eglot.el ends here
